/* Shared by the KubeAttention eBPF programs (compiled by bcc; see bpf/README.md).
 *
 * Histograms are built in the kernel in log2 slots so user space only reads a summary:
 *   slot 0      holds values in [0, 1)            (the value is an integer: exactly 0)
 *   slot k >= 1 holds values in [2^(k-1), 2^k)
 *   slot KA_HIST_SLOTS-1 is open-ended: every larger value lands there.
 * The Python side (agent/ebpf/histogram.py, Log2Histogram) uses the same layout to compute
 * quantiles; KA_HIST_SLOTS is passed by it as a cflag so both agree.
 */
#ifndef KA_COMMON_H
#define KA_COMMON_H

#ifndef KA_HIST_SLOTS
#define KA_HIST_SLOTS 32
#endif

/* floor(log2(v)) + 1 for v > 0, 0 for v == 0, clamped to the last slot. Unrolled
 * binary search: no loops for the verifier. */
static __always_inline u32 ka_log2_slot(u64 v)
{
    u32 r = 0;
    if (v == 0)
        return 0;
    if (v >> 32) { v >>= 32; r += 32; }
    if (v >> 16) { v >>= 16; r += 16; }
    if (v >> 8)  { v >>= 8;  r += 8; }
    if (v >> 4)  { v >>= 4;  r += 4; }
    if (v >> 2)  { v >>= 2;  r += 2; }
    if (v >> 1)  { r += 1; }
    r += 1;
    return r < KA_HIST_SLOTS ? r : KA_HIST_SLOTS - 1;
}

/* A latency summary: count, sum and the log2 histogram, all in one map value so one
 * lookup reads it. */
struct ka_latency {
    u64 count;
    u64 sum_ns;
    u64 slots[KA_HIST_SLOTS];
};

/* Add one latency (ns) to a summary that only this CPU writes (per-CPU map value). */
static __always_inline void ka_latency_add_local(struct ka_latency *l, u64 delta_ns)
{
    u32 slot = ka_log2_slot(delta_ns / 1000);
    l->count++;
    l->sum_ns += delta_ns;
    if (slot < KA_HIST_SLOTS)  /* always true; keeps the verifier's bounds explicit */
        l->slots[slot]++;
}

/* Same for a summary shared by all CPUs (plain hash map value): atomic adds. */
static __always_inline void ka_latency_add_shared(struct ka_latency *l, u64 delta_ns)
{
    u32 slot = ka_log2_slot(delta_ns / 1000);
    __sync_fetch_and_add(&l->count, 1);
    __sync_fetch_and_add(&l->sum_ns, delta_ns);
    if (slot < KA_HIST_SLOTS)
        __sync_fetch_and_add(&l->slots[slot], 1);
}

#endif /* KA_COMMON_H */
