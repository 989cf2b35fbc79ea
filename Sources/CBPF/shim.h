// libbpf: loading the second chance's programs (bpf(2)) and attaching them at tc ingress
// (rtnetlink), as `tc filter add dev IF ingress bpf da` would. Its option structs are
// filled by its own macro here, which Swift does not import. libbpf's own printing is turned
// off: penha reports each failure once, in its log, with the kernel's reason.
#include <errno.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>

// Returns the program's descriptor, or -errno; the verifier's reasons go to `log`.
static inline int penha_bpf_load_classifier(const void *instructions, size_t count, const char *name,
                                            char *log, unsigned log_size) {
    libbpf_set_print(NULL);
    LIBBPF_OPTS(bpf_prog_load_opts, options, .log_buf = log, .log_size = log_size, .log_level = log ? 1 : 0);
    return bpf_prog_load(BPF_PROG_TYPE_SCHED_CLS, name, "GPL", (const struct bpf_insn *)instructions, count, &options);
}

// One filter per (interface, priority), handle 1, direct action; replaces what is there.
static inline int penha_tc_attach_ingress(int interface, unsigned priority, int program) {
    libbpf_set_print(NULL);
    LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = interface, .attach_point = BPF_TC_INGRESS);
    int result = bpf_tc_hook_create(&hook);
    if (result != 0 && result != -EEXIST) return result;
    LIBBPF_OPTS(bpf_tc_opts, options, .handle = 1, .priority = priority, .prog_fd = program, .flags = BPF_TC_F_REPLACE);
    return bpf_tc_attach(&hook, &options);
}

// 0 when the filter is gone, or was never there (ENOENT; EINVAL: no clsact qdisc either).
static inline int penha_tc_detach_ingress(int interface, unsigned priority) {
    libbpf_set_print(NULL);
    LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = interface, .attach_point = BPF_TC_INGRESS);
    LIBBPF_OPTS(bpf_tc_opts, options, .handle = 1, .priority = priority);
    int result = bpf_tc_detach(&hook, &options);
    return result == -ENOENT || result == -EINVAL ? 0 : result;
}
