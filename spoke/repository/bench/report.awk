# Summarises compare.sh's results.tsv (repetition, dataset, operation, tool, wall s, CPU s,
# peak RSS KiB, bytes, stored bytes) as markdown table rows, one per (dataset, operation, tool),
# in the order the steps first ran. Run with: awk -F '\t' -f report.awk results.tsv
function median(list,    v, n, i, j, t) {
  n = split(list, v, " ")
  for (i = 2; i <= n; i++)
    for (j = i; j > 1 && v[j - 1] + 0 > v[j] + 0; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
  return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
# The smallest value of a list (sign 1) or the largest (sign -1).
function extreme(list, sign,    v, n, i, m) {
  n = split(list, v, " ")
  m = v[1]
  for (i = 2; i <= n; i++) if (sign * v[i] < sign * m) m = v[i]
  return m
}
function lowest(list) { return extreme(list, 1) }
function highest(list) { return extreme(list, -1) }
{
  key = $2 SUBSEP $3 SUBSEP $4
  if (!(key in walls)) order[++steps] = key
  walls[key] = walls[key] " " $5
  cpus[key] = cpus[key] " " $6
  rss[key] = rss[key] " " $7
  bytes[key] = $8
  stored[key] = stored[key] " " $9
  wall_of[$2, $3, $4, $1] = $5
  reps[$1] = 1
}
END {
  for (s = 1; s <= steps; s++) {
    key = order[s]
    split(key, k, SUBSEP)
    w = median(walls[key])
    speedup = ""
    if (k[3] == "restic" && ((k[1], k[2], "ferry") in walls)) {
      ratios = ""
      for (r in reps)
        if (((k[1], k[2], "ferry", r) in wall_of) && ((k[1], k[2], "restic", r) in wall_of) && wall_of[k[1], k[2], "ferry", r] > 0)
          ratios = ratios " " wall_of[k[1], k[2], "restic", r] / wall_of[k[1], k[2], "ferry", r]
      if (ratios != "") speedup = sprintf("%.1f / %.1f", median(ratios), lowest(ratios))
    }
    printf "| %s | %s | %s | %.2f | %.2f–%.2f | %.2f | %.0f | %.0f | %.1f | %s |\n",
      k[1], k[2], k[3], w, lowest(walls[key]), highest(walls[key]), median(cpus[key]),
      highest(rss[key]) / 1024, (bytes[key] / 1048576) / (w > 0 ? w : 0.01),
      median(stored[key]) / 1048576, speedup
  }
}
