//! Process orchestration for end-to-end tests and the demo.
