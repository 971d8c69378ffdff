/*
 * wedge-thread PID NAME SECONDS: stop one thread of a process, found by its name
 * (/proc/PID/task/TID/comm), and hold it stopped while the rest of the process runs on: a
 * wedged data-plane worker for the watchdog tests. PTRACE_SEIZE + PTRACE_INTERRUPT stop that
 * thread alone (PTRACE_ATTACH's SIGSTOP would stop the whole process). Prints "wedged TID" once
 * the thread is stopped; exits when the process is gone, after SECONDS, or on SIGTERM (the
 * thread resumes when the tracer exits). Exit status: 0 held until the end or the process died,
 * 2 thread not found, 3 ptrace refused.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop_requested;
static void on_term(int sig) { (void)sig; stop_requested = 1; }

static int find_thread(int pid, const char *name) {
  char dir[64];
  snprintf(dir, sizeof dir, "/proc/%d/task", pid);
  DIR *d = opendir(dir);
  if (!d) return -1;
  int found = -1;
  struct dirent *e;
  while ((e = readdir(d)) && found < 0) {
    if (e->d_name[0] == '.') continue;
    char path[384], comm[32] = "";
    snprintf(path, sizeof path, "%s/%s/comm", dir, e->d_name);
    FILE *f = fopen(path, "r");
    if (!f) continue;
    if (fgets(comm, sizeof comm, f)) comm[strcspn(comm, "\n")] = 0;
    fclose(f);
    if (strcmp(comm, name) == 0) found = atoi(e->d_name);
  }
  closedir(d);
  return found;
}

int main(int argc, char **argv) {
  if (argc != 4) { fprintf(stderr, "usage: %s PID THREAD-NAME SECONDS\n", argv[0]); return 64; }
  int pid = atoi(argv[1]);
  int seconds = atoi(argv[3]);
  int tid = find_thread(pid, argv[2]);
  if (tid < 0) { fprintf(stderr, "no thread named %s in process %d\n", argv[2], pid); return 2; }
  if (ptrace(PTRACE_SEIZE, tid, 0, 0) != 0 || ptrace(PTRACE_INTERRUPT, tid, 0, 0) != 0) {
    fprintf(stderr, "ptrace thread %d: %s\n", tid, strerror(errno));
    return 3;
  }
  int status;
  if (waitpid(tid, &status, __WALL) != tid) { fprintf(stderr, "waitpid %d: %s\n", tid, strerror(errno)); return 3; }
  printf("wedged %d\n", tid);
  fflush(stdout);
  signal(SIGTERM, on_term);
  signal(SIGINT, on_term);
  time_t end = time(NULL) + seconds;
  while (!stop_requested && time(NULL) < end) {
    /* Another stop or the thread's death (the process was killed) is reported here. */
    pid_t r = waitpid(tid, &status, __WALL | WNOHANG);
    if (r == tid && (WIFEXITED(status) || WIFSIGNALED(status))) return 0;
    if (r == tid && WIFSTOPPED(status) && WSTOPSIG(status) != SIGTRAP) {
      /* A signal for the thread: deliver it (a fatal one ends the process), then stop again. */
      ptrace(PTRACE_CONT, tid, 0, WSTOPSIG(status));
      ptrace(PTRACE_INTERRUPT, tid, 0, 0);
    }
    if (r < 0 && errno == ECHILD) return 0;
    usleep(100000);
  }
  return 0;
}
