/* Block-IO latency, from two block tracepoints: block_rq_issue (the request goes to the
 * device driver) and block_rq_complete (the device finished it). The time between them
 * is the device service time, as bcc's biolatency reports it without -Q (queueing in
 * the block layer before issue is not included).
 *
 * Tracepoints give no request pointer, so a request is keyed by (dev, sector), the usual
 * tracepoint-only approach: two requests in flight at once on the same device and
 * sector (rare; e.g. two flushes, which carry no sector) share a key, and the later
 * issue time wins. A completion whose issue was not seen (issued before the program
 * was attached, or the rest of a partially completed request) is counted, not measured.
 *
 * The kernel skips a tracing program now and then (e.g. when another BPF program is
 * running on that CPU), so an issue may never see its completion: the in-flight map is
 * an LRU so such entries age out instead of filling it, and a match older than
 * MAX_LATENCY_NS (far beyond the block layer's request timeout) is a stale entry whose
 * sector was reused, counted and not measured.
 *
 * Parameters (cflags, set by agent/collectors/ebpf_biolatency.py):
 *   MAX_INFLIGHT     requests in flight tracked at once (least recently issued evicted)
 *   MAX_DISKS        devices per interval (user space drains the map every read)
 *   MAX_LATENCY_NS   longer issue -> completion times are stale matches
 *   KA_HIST_SLOTS    see ka_common.h
 */
#include "ka_common.h"

#ifndef MAX_INFLIGHT
#define MAX_INFLIGHT 16384
#endif
#ifndef MAX_DISKS
#define MAX_DISKS 256
#endif
#ifndef MAX_LATENCY_NS
#define MAX_LATENCY_NS 120000000000ULL
#endif

/* Node counters; the order is mirrored by BIO_COUNTERS in agent/collectors/ebpf_biolatency.py. */
enum ka_bio_counter {
    BIO_ISSUED,           /* block_rq_issue events */
    BIO_UNMATCHED,        /* completions without a recorded issue */
    BIO_STALE,            /* completions matching an issue older than MAX_LATENCY_NS */
    BIO_INFLIGHT_DROPS,   /* issues not recorded (in-flight map update failed) */
    BIO_DISK_DROPS,       /* per-device updates lost: MAX_DISKS reached in the interval */
    BIO_NCOUNTERS,
};

struct ka_bio_key {
    u32 dev;              /* kernel dev_t: major << 20 | minor */
    u32 pad;
    u64 sector;
};

/* Cumulative since load; user space takes deltas. latency.count = completed requests. */
struct ka_bio_node {
    u64 counters[BIO_NCOUNTERS];
    struct ka_latency latency;
};

BPF_TABLE("lru_hash", struct ka_bio_key, u64, inflight, MAX_INFLIGHT);
BPF_PERCPU_ARRAY(node_stats, struct ka_bio_node, 1);
BPF_HASH(disks, u32, struct ka_latency, MAX_DISKS);  /* drained by user space every read */
BPF_ARRAY(zero_latency, struct ka_latency, 1);       /* never written: the initial value */

int ka_bio_issue(struct tracepoint__block__block_rq_issue *args)
{
    u32 zero = 0;
    struct ka_bio_node *node = node_stats.lookup(&zero);
    if (!node)
        return 0;
    struct ka_bio_key key = {.dev = args->dev, .pad = 0, .sector = args->sector};
    u64 now = bpf_ktime_get_ns();
    node->counters[BIO_ISSUED]++;
    if (inflight.update(&key, &now) != 0)
        node->counters[BIO_INFLIGHT_DROPS]++;
    return 0;
}

int ka_bio_done(struct tracepoint__block__block_rq_complete *args)
{
    u32 zero = 0;
    struct ka_bio_node *node = node_stats.lookup(&zero);
    if (!node)
        return 0;
    struct ka_bio_key key = {.dev = args->dev, .pad = 0, .sector = args->sector};
    u64 *issued = inflight.lookup(&key);
    if (!issued) {
        node->counters[BIO_UNMATCHED]++;
        return 0;
    }
    u64 now = bpf_ktime_get_ns();
    u64 delta = now > *issued ? now - *issued : 0;
    inflight.delete(&key);
    if (delta > MAX_LATENCY_NS) {
        node->counters[BIO_STALE]++;
        return 0;
    }
    ka_latency_add_local(&node->latency, delta);

    u32 dev = key.dev;
    struct ka_latency *d = disks.lookup(&dev);
    if (!d) {
        struct ka_latency *init = zero_latency.lookup(&zero);
        if (init) {
            disks.insert(&dev, init);
            d = disks.lookup(&dev);
        }
    }
    if (d)
        ka_latency_add_shared(d, delta);
    else
        node->counters[BIO_DISK_DROPS]++;
    return 0;
}
