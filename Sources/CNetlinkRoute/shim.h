// libnl-route-3: adding and removing the virtual addresses through rtnetlink.
#include <netlink/netlink.h>
#include <netlink/addr.h>
#include <netlink/errno.h>
#include <netlink/route/addr.h>
#include <linux/if_addr.h>
