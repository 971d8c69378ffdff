/*
 * cfwd: the project's own minimal L2TPv3-over-UDP (IPv4) tap forwarder, used by bench/run.sh as
 * "the practical limit of this machine". One thread, poll(), no allocation on the hot path.
 *   encap: tap read() drain (up to BATCH frames) -> one sendmmsg()
 *   decap: recvmmsg() (up to BATCH datagrams) -> one tap write() per frame
 * Header (12 bytes): UDP data header 0x0003 0x0000 (T=0, ver 3), session ID, default L2-specific
 * sublayer (S=0, seq 0). No cookie, no sequencing. Written from scratch for this project.
 *
 * usage: cfwd TAP LOCAL_IP LOCAL_PORT REMOTE_IP REMOTE_PORT TX_SESSION RX_SESSION
 * Creates (or attaches to) tap TAP. Prints counters on SIGTERM/SIGINT and exits 0.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#define BATCH 64
#define HDR 12
#define BUFSZ 2048
#define ROUNDS 8

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

static unsigned char txbuf[BATCH][BUFSZ] __attribute__((aligned(64)));
static unsigned char rxbuf[BATCH][BUFSZ] __attribute__((aligned(64)));
static struct mmsghdr txmsg[BATCH], rxmsg[BATCH];
static struct iovec txiov[BATCH], rxiov[BATCH];

static unsigned long long enc_pkts, enc_drops, dec_pkts, dec_bad, dec_tapdrops;

static void die(const char *what) { perror(what); exit(1); }

static int tap_open(const char *name) {
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) die("open /dev/net/tun");
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
  strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) die("TUNSETIFF");
  return fd;
}

static int udp_open(const char *lip, int lport, const char *rip, int rport) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  int sz = 4 << 20;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof sz) < 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof sz) < 0)
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
  int pmtu = IP_PMTUDISC_DONT;
  setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &pmtu, sizeof pmtu);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(lport)};
  if (inet_pton(AF_INET, lip, &a.sin_addr) != 1) die("local address");
  if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
  struct sockaddr_in r = {.sin_family = AF_INET, .sin_port = htons(rport)};
  if (inet_pton(AF_INET, rip, &r.sin_addr) != 1) die("remote address");
  /* Connected: the kernel filters foreign sources and skips the route lookup per send. */
  if (connect(fd, (struct sockaddr *)&r, sizeof r) < 0) die("connect");
  return fd;
}

/* tap -> UDP: drain up to BATCH frames behind a prebuilt header, send them in one sendmmsg. */
static void encap(int tap, int sock) {
  for (int round = 0; round < ROUNDS; round++) {
    int n = 0;
    while (n < BATCH) {
      ssize_t r = read(tap, txbuf[n] + HDR, BUFSZ - HDR);
      if (r <= 0) break;
      txiov[n].iov_len = (size_t)r + HDR;
      n++;
    }
    int done = 0;
    while (done < n) {
      int s = sendmmsg(sock, txmsg + done, n - done, 0);
      if (s <= 0) break; /* EAGAIN/ENOBUFS: drop the rest of this batch, count it */
      done += s;
    }
    enc_pkts += done;
    enc_drops += n - done;
    if (n < BATCH) return;
  }
}

/* UDP -> tap: recvmmsg a batch, check version and session, write each frame to the tap. */
static void decap(int tap, int sock, uint32_t rx_session) {
  for (int round = 0; round < ROUNDS; round++) {
    for (int i = 0; i < BATCH; i++) rxiov[i].iov_len = BUFSZ;
    int n = recvmmsg(sock, rxmsg, BATCH, MSG_DONTWAIT, NULL);
    if (n <= 0) return;
    for (int i = 0; i < n; i++) {
      unsigned char *p = rxbuf[i];
      unsigned len = rxmsg[i].msg_len;
      if (len < HDR + 14 || p[0] != 0 || (p[1] & 0x0f) != 3 ||
          ((uint32_t)p[4] << 24 | (uint32_t)p[5] << 16 | (uint32_t)p[6] << 8 | p[7]) != rx_session) {
        dec_bad++;
        continue;
      }
      if (write(tap, p + HDR, len - HDR) < 0) dec_tapdrops++;
      else dec_pkts++;
    }
    if (n < BATCH) return;
  }
}

int main(int argc, char **argv) {
  if (argc != 8) {
    fprintf(stderr, "usage: %s TAP LOCAL_IP LOCAL_PORT REMOTE_IP REMOTE_PORT TX_SESSION RX_SESSION\n", argv[0]);
    return 2;
  }
  uint32_t tx_session = (uint32_t)strtoul(argv[6], NULL, 0);
  uint32_t rx_session = (uint32_t)strtoul(argv[7], NULL, 0);
  int tap = tap_open(argv[1]);
  int sock = udp_open(argv[2], atoi(argv[3]), argv[4], atoi(argv[5]));

  for (int i = 0; i < BATCH; i++) {
    unsigned char *h = txbuf[i];
    h[0] = 0x00; h[1] = 0x03; h[2] = 0; h[3] = 0;
    h[4] = tx_session >> 24; h[5] = tx_session >> 16; h[6] = tx_session >> 8; h[7] = tx_session;
    h[8] = h[9] = h[10] = h[11] = 0;
    txiov[i].iov_base = txbuf[i];
    txmsg[i].msg_hdr.msg_iov = &txiov[i];
    txmsg[i].msg_hdr.msg_iovlen = 1;
    rxiov[i].iov_base = rxbuf[i];
    rxiov[i].iov_len = BUFSZ;
    rxmsg[i].msg_hdr.msg_iov = &rxiov[i];
    rxmsg[i].msg_hdr.msg_iovlen = 1;
  }

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);

  struct pollfd pf[2] = {{.fd = tap, .events = POLLIN}, {.fd = sock, .events = POLLIN}};
  while (!stop) {
    int r = poll(pf, 2, 200);
    if (r < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    if (pf[0].revents & POLLIN) encap(tap, sock);
    if (pf[1].revents & POLLIN) decap(tap, sock, rx_session);
  }
  printf("cfwd encap=%llu encap_drops=%llu decap=%llu decap_bad=%llu decap_tapdrops=%llu\n",
         enc_pkts, enc_drops, dec_pkts, dec_bad, dec_tapdrops);
  return 0;
}
