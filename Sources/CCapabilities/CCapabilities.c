#include "CCapabilities.h"

#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int penha_keep_capabilities(int keep) {
    return prctl(PR_SET_KEEPCAPS, keep ? 1 : 0, 0, 0, 0);
}

int penha_limit_to_network_capabilities(int with_bpf) {
    struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = { { 0 } };
    data[0].permitted = (1u << CAP_NET_RAW) | (1u << CAP_NET_ADMIN);
    data[0].effective = data[0].permitted;
    // CAP_BPF (Linux 5.8) is in the second word: loading the second chance's programs.
    data[1].permitted = with_bpf ? 1u << (CAP_BPF - 32) : 0;
    data[1].effective = data[1].permitted;
    return (int)syscall(SYS_capset, &header, data);
}
