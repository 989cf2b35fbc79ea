#ifndef PENHA_CCAPABILITIES_H
#define PENHA_CCAPABILITIES_H

/// prctl(PR_SET_KEEPCAPS): whether this thread keeps its permitted capabilities when its
/// user ids all become non-zero (prctl is variadic, which Swift cannot call). 0 or -1 (errno).
int penha_keep_capabilities(int keep);

/// Makes CAP_NET_RAW and CAP_NET_ADMIN (and CAP_BPF with `with_bpf`) this thread's only
/// permitted and effective capabilities (capset(2), which glibc does not declare). 0 or -1 (errno).
int penha_limit_to_network_capabilities(int with_bpf);

#endif
