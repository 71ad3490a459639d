/* Run-queue latency and cross-cgroup preemptions, from three scheduler tracepoints.
 *
 *   sched_wakeup, sched_wakeup_new  a task becomes runnable: remember when (per pid)
 *   sched_switch                    prev leaves the CPU, next gets it:
 *                                   - next's wait (now - enqueue time) goes into a log2
 *                                     histogram in microseconds, for the node and for
 *                                     next's cgroup;
 *                                   - if prev is still runnable (preempted, or yielded), it
 *                                     re-enters the run queue now, and when next belongs
 *                                     to another cgroup this is a cross-cgroup preemption,
 *                                     counted for the node, per cgroup and per
 *                                     (preemptor, victim) pair.
 *
 * Tracepoint arguments only (bcc builds the args struct from the running kernel's
 * tracefs format), never struct task_struct: no kprobes, and no dependence on the
 * installed kernel headers matching the running kernel's structure layouts.
 *
 * Cgroup key: bpf_get_current_cgroup_id(), the cgroup v2 id (the inode number of the
 * task's directory in the cgroup2 mount). At sched_switch, current is still prev, so
 * prev's id is exact; next's id is the one recorded the last time next left a CPU (or,
 * for a new task, its parent's at sched_wakeup_new). 0 means "not seen yet".
 *
 * On cgroup v1 (and v1-hybrid) hosts the v2 id is the same for every task, and the kernel
 * cannot be asked for a task's v1 cgroup without reading struct task_struct. With
 * KA_PAIRS_BY_TGID the program therefore records every preemption by (preemptor tgid,
 * victim tgid) instead, and user space decides which pairs cross a cgroup by reading
 * /proc/<tgid>/cgroup (the cpu controller's path); RQ_CROSS_CGROUP stays 0 in that mode.
 *
 * Parameters (cflags, set by agent/collectors/ebpf_runqueue.py):
 *   MAX_TASKS            pids tracked (LRU: the least recently used are evicted)
 *   MAX_CGROUPS          cgroups per interval (user space drains the map every read)
 *   MAX_PREEMPT_PAIRS    (preemptor, victim) cgroup pairs per interval (drained too)
 *   KA_TASK_STATE_MASK   bits of the tracepoint's prev_state that mean "not runnable"
 *                        (TASK_REPORT_MAX - 1, probed from the tracepoint's print fmt)
 *   KA_PAIRS_BY_TGID     1: preemption pairs keyed by tgid, for user space (cgroup v1)
 *   KA_HIST_SLOTS        see ka_common.h
 */
#include "ka_common.h"

#ifndef MAX_TASKS
#define MAX_TASKS 16384
#endif
#ifndef MAX_CGROUPS
#define MAX_CGROUPS 1024
#endif
#ifndef MAX_PREEMPT_PAIRS
#define MAX_PREEMPT_PAIRS 4096
#endif
#ifndef KA_TASK_STATE_MASK
#define KA_TASK_STATE_MASK 0xff
#endif
#ifndef KA_PAIRS_BY_TGID
#define KA_PAIRS_BY_TGID 0
#endif

/* Node counters; the order is mirrored by RQ_COUNTERS in agent/collectors/ebpf_runqueue.py. */
enum ka_rq_counter {
    RQ_SWITCHES,          /* sched_switch events */
    RQ_PREEMPTIONS,       /* switches where prev was still runnable */
    RQ_CROSS_CGROUP,      /* ... and next belongs to another cgroup */
    RQ_UNKNOWN_CGROUP,    /* ... but next's cgroup was not known yet */
    RQ_UNATTRIBUTED,      /* waits of a task whose cgroup was not known yet (node only) */
    RQ_CGROUP_DROPS,      /* per-cgroup updates lost: MAX_CGROUPS reached in the interval */
    RQ_PAIR_DROPS,        /* pair updates lost: MAX_PREEMPT_PAIRS reached in the interval */
    RQ_NCOUNTERS,
};

struct ka_task {
    u64 enqueued_ns;      /* when it last became runnable; 0 = not waiting */
    u64 cgroup_id;        /* 0 = not known yet */
    u32 tgid;             /* its process, as of when it last left a CPU; 0 = not known yet */
    u32 pad;
};

/* Cumulative since load; user space takes deltas. */
struct ka_rq_node {
    u64 counters[RQ_NCOUNTERS];
    struct ka_latency delay;
};

/* Per cgroup, drained by user space every read. */
struct ka_rq_cgroup {
    struct ka_latency delay;      /* run-queue waits of this cgroup's tasks */
    u64 preempted_others;         /* cross-cgroup preemptions this cgroup's tasks caused */
    u64 preempted_by_others;      /* ... and suffered */
};

struct ka_preempt_pair {
    u64 preemptor;                /* cgroup id (or tgid) of the task that got the CPU */
    u64 victim;                   /* cgroup id (or tgid) of the runnable task that lost it */
};

BPF_TABLE("lru_hash", u32, struct ka_task, tasks, MAX_TASKS);
BPF_PERCPU_ARRAY(node_stats, struct ka_rq_node, 1);
BPF_HASH(cgroups, u64, struct ka_rq_cgroup, MAX_CGROUPS);
BPF_HASH(preempt_pairs, struct ka_preempt_pair, u64, MAX_PREEMPT_PAIRS);
BPF_ARRAY(zero_cgroup, struct ka_rq_cgroup, 1);  /* never written: the initial value */

static __always_inline struct ka_rq_cgroup *ka_cgroup(u64 id, struct ka_rq_node *node)
{
    struct ka_rq_cgroup *c = cgroups.lookup(&id);
    if (c)
        return c;
    u32 zero = 0;
    struct ka_rq_cgroup *init = zero_cgroup.lookup(&zero);
    if (!init)
        return NULL;
    cgroups.insert(&id, init);  /* fails when full, or when another CPU inserted it first */
    c = cgroups.lookup(&id);
    if (!c)
        node->counters[RQ_CGROUP_DROPS]++;
    return c;
}

static __always_inline int ka_enqueue(u32 pid, u64 cgroup_id)
{
    if (pid == 0)
        return 0;
    u64 now = bpf_ktime_get_ns();
    struct ka_task *t = tasks.lookup(&pid);
    if (t) {
        t->enqueued_ns = now;
        if (cgroup_id)
            t->cgroup_id = cgroup_id;
        return 0;
    }
    struct ka_task fresh = {.enqueued_ns = now, .cgroup_id = cgroup_id};
    tasks.update(&pid, &fresh);
    return 0;
}

int ka_rq_wakeup(struct tracepoint__sched__sched_wakeup *args)
{
    return ka_enqueue(args->pid, 0);  /* current is the waker: its cgroup says nothing */
}

int ka_rq_wake_new(struct tracepoint__sched__sched_wakeup_new *args)
{
    /* current is the parent; the child starts in the parent's cgroup (except
     * clone3(CLONE_INTO_CGROUP), corrected when the child first leaves a CPU). */
    return ka_enqueue(args->pid, bpf_get_current_cgroup_id());
}

int ka_rq_switch(struct tracepoint__sched__sched_switch *args)
{
    u32 zero = 0;
    struct ka_rq_node *node = node_stats.lookup(&zero);
    if (!node)
        return 0;
    u64 now = bpf_ktime_get_ns();
    u32 prev = args->prev_pid;
    u32 next = args->next_pid;
    int runnable = (args->prev_state & KA_TASK_STATE_MASK) == 0;
    u64 prev_cg = bpf_get_current_cgroup_id();
    u32 prev_tgid = bpf_get_current_pid_tgid() >> 32;  /* current is still prev */
    node->counters[RQ_SWITCHES]++;

    if (prev != 0) {  /* pid 0: a CPU's idle task, never queued */
        struct ka_task *p = tasks.lookup(&prev);
        if (p) {
            p->cgroup_id = prev_cg;
            p->tgid = prev_tgid;
            p->enqueued_ns = runnable ? now : 0;
        } else {
            struct ka_task fresh = {.enqueued_ns = runnable ? now : 0, .cgroup_id = prev_cg,
                                    .tgid = prev_tgid};
            tasks.update(&prev, &fresh);
        }
    }
    if (next == 0)
        return 0;

    struct ka_task *n = tasks.lookup(&next);
    if (!n)
        return 0;  /* never seen: no enqueue time, no cgroup */
    u64 next_cg = n->cgroup_id;
    u32 next_tgid = n->tgid ? n->tgid : next;  /* a new thread's tid names it in /proc too */
    u64 enqueued = n->enqueued_ns;
    n->enqueued_ns = 0;

    struct ka_rq_cgroup *nc = NULL;
    if (enqueued && now > enqueued) {
        u64 delta = now - enqueued;
        ka_latency_add_local(&node->delay, delta);
        if (next_cg) {
            nc = ka_cgroup(next_cg, node);
            if (nc)
                ka_latency_add_shared(&nc->delay, delta);
        } else {
            node->counters[RQ_UNATTRIBUTED]++;
        }
    }

    if (prev == 0 || !runnable)
        return 0;
    node->counters[RQ_PREEMPTIONS]++;
#if KA_PAIRS_BY_TGID
    if (next_tgid == prev_tgid)
        return 0;  /* one process's threads: one cgroup */
    struct ka_preempt_pair by_tgid = {.preemptor = next_tgid, .victim = prev_tgid};
    u64 *seen = preempt_pairs.lookup(&by_tgid);
    if (!seen) {
        u64 none = 0;
        preempt_pairs.insert(&by_tgid, &none);
        seen = preempt_pairs.lookup(&by_tgid);
    }
    if (seen)
        __sync_fetch_and_add(seen, 1);
    else
        node->counters[RQ_PAIR_DROPS]++;
    return 0;
#endif
    if (next_cg == 0) {
        node->counters[RQ_UNKNOWN_CGROUP]++;
        return 0;
    }
    if (next_cg == prev_cg)
        return 0;
    node->counters[RQ_CROSS_CGROUP]++;
    if (!nc)
        nc = ka_cgroup(next_cg, node);
    if (nc)
        __sync_fetch_and_add(&nc->preempted_others, 1);
    struct ka_rq_cgroup *pc = ka_cgroup(prev_cg, node);
    if (pc)
        __sync_fetch_and_add(&pc->preempted_by_others, 1);

    struct ka_preempt_pair pair = {.preemptor = next_cg, .victim = prev_cg};
    u64 *count = preempt_pairs.lookup(&pair);
    if (!count) {
        u64 none = 0;
        preempt_pairs.insert(&pair, &none);
        count = preempt_pairs.lookup(&pair);
    }
    if (count)
        __sync_fetch_and_add(count, 1);
    else
        node->counters[RQ_PAIR_DROPS]++;
    return 0;
}
