#!/usr/bin/env python3
"""Drives the real Helm library (Go, from the PyPI package helm-sdkpy) for Ferry's tests.

usage: helm_client.py LIB KUBECONFIG NAMESPACE ACTION RELEASE [CHART] [VALUES_JSON]
ACTION: install | upgrade | status | get-values | history
Prints the action's JSON result; exits 1 with Helm's error message on failure.
"""
import ctypes
import json
import sys


def main():
    lib_path, kubeconfig, namespace, action, release = sys.argv[1:6]
    chart = sys.argv[6] if len(sys.argv) > 6 else ""
    values = sys.argv[7] if len(sys.argv) > 7 else ""
    lib = ctypes.CDLL(lib_path)
    lib.helm_sdkpy_last_error.restype = ctypes.c_char_p
    handle = ctypes.c_ulonglong()

    def check(rc, what):
        if rc != 0:
            print(f"helm {what}: {lib.helm_sdkpy_last_error().decode()}", file=sys.stderr)
            sys.exit(1)

    check(lib.helm_sdkpy_config_create(namespace.encode(), kubeconfig.encode(), None, b"{}", ctypes.byref(handle)), "config")
    out = ctypes.c_char_p()
    name = release.encode()
    if action in ("install", "upgrade"):
        options = {"wait": False, "timeout_seconds": 60, "server_side_apply": "false"}
        if action == "install":
            options["create_namespace"] = True
            fn = lib.helm_sdkpy_install
        else:
            options["reuse_values"] = True
            fn = lib.helm_sdkpy_upgrade
        check(fn(handle, name, chart.encode(), values.encode(), b"", json.dumps(options).encode(), ctypes.byref(out)), action)
    elif action == "status":
        check(lib.helm_sdkpy_status(handle, name, ctypes.byref(out)), action)
    elif action == "get-values":
        check(lib.helm_sdkpy_get_values(handle, name, 1, ctypes.byref(out)), action)
    elif action == "history":
        check(lib.helm_sdkpy_history(handle, name, ctypes.byref(out)), action)
    else:
        print(f"unknown action {action}", file=sys.stderr)
        sys.exit(2)
    print(out.value.decode())


if __name__ == "__main__":
    main()
