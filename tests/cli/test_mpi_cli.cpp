// mpirun dsv4 ...: expert parallel end to end through the executable — the same greedy text as one
// process, a rank that cannot load named on rank 0, and a rank killed under a live server ending the
// job (503 for the request in flight, non-zero exit) instead of hanging.
#ifdef DSV4_MPIRUN
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "cli/cli_util.h"

namespace fs = std::filesystem;
using namespace dsv4::test;

namespace {

const fs::path kNano = fs::path(DSV4_TEST_DATA) / "../../models/dsv4-nano";

std::string mpirun(int np) {
  return std::string("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none ") +
         DSV4_MPIRUN + " --oversubscribe -np " + std::to_string(np) + " ";
}

CmdRun sh(const std::string& cmd, const fs::path& tmp) {
  const auto out = tmp / "stdout.txt", err = tmp / "stderr.txt";
  const int st = std::system((cmd + " >" + out.string() + " 2>" + err.string()).c_str());
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, slurp_file(out), slurp_file(err)};
}

}  // namespace

TEST(MpiCli, GreedyRunIsTheSameTextAsOneProcess) {
  const auto tmp = make_temp_dir("mpi_run");
  const std::string args = " run -m " + kNano.string() + " --temp 0 -n 40 -p 'The old man and the sea'";
  const CmdRun one = run_dsv4(args, tmp);
  ASSERT_EQ(one.rc, 0) << one.err;
  ASSERT_GT(one.out.size(), 40u);
  for (int np : {2, 3}) {
    const CmdRun many = sh(mpirun(np) + DSV4_BINARY + args, tmp);
    ASSERT_EQ(many.rc, 0) << many.err;
    EXPECT_EQ(many.out, one.out) << np << " ranks";
    EXPECT_NE(many.err.find("expert parallel over " + std::to_string(np) + " ranks"), std::string::npos) << many.err;
  }
  fs::remove_all(tmp);
}

TEST(MpiCli, ARankThatCannotLoadIsNamedOnRankZero) {
  const auto tmp = make_temp_dir("mpi_load");
  const std::string bin = DSV4_BINARY;
  const CmdRun r = sh(mpirun(1) + bin + " run -m " + kNano.string() + " -n 4 -p hi : -np 1 " + bin + " run -m " +
                          (tmp / "missing").string() + " -n 4 -p hi",
                      tmp);
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.err.find("rank 1 could not load the model"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find((tmp / "missing").string()), std::string::npos) << r.err;
  fs::remove_all(tmp);
}

TEST(MpiCli, AKilledRankEndsTheServerWithA503AndAFailure) {
  const auto tmp = make_temp_dir("mpi_kill");
  const fs::path log = tmp / "serve.err", status = tmp / "status";
  const std::string serve = mpirun(2) + DSV4_BINARY + " serve -m " + kNano.string() + " --port 0 2>" + log.string() +
                            " >/dev/null; echo $? >" + status.string();
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    setpgid(0, 0);
    execl("/bin/sh", "sh", "-c", serve.c_str(), (char*)nullptr);
    _exit(127);
  }
  // The port, from "listening on http://127.0.0.1:PORT".
  int port = 0;
  for (int i = 0; i < 600 && !port; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const std::string s = slurp_file(log);
    const auto at = s.find("listening on http://127.0.0.1:");
    if (at != std::string::npos) port = std::atoi(s.c_str() + at + 30);
  }
  ASSERT_GT(port, 0) << slurp_file(log);
  // Rank 1 is the child of mpirun whose environment says so.
  const CmdRun ps = sh("for p in $(pgrep -P $(pgrep -n -x mpirun)); do tr '\\0' '\\n' </proc/$p/environ | grep -qx "
                       "OMPI_COMM_WORLD_RANK=1 && echo $p; done",
                       tmp);
  const int worker = std::atoi(ps.out.c_str());
  ASSERT_GT(worker, 0) << ps.err;
  ASSERT_EQ(kill(worker, SIGKILL), 0);
  const std::string body = R"({"model":"dsv4-nano","messages":[{"role":"user","content":"hello"}],"max_tokens":16})";
  const CmdRun c = sh("curl -s -m 30 -o " + (tmp / "body").string() + " -w '%{http_code}' http://127.0.0.1:" +
                          std::to_string(port) + "/v1/chat/completions -H 'content-type: application/json' -d '" + body + "'",
                      tmp);
  // The request in flight learns that the model is gone (or the connection closes as the job ends).
  EXPECT_TRUE(c.out == "503" || c.out == "000") << c.out << " " << slurp_file(tmp / "body");
  int st = 0;
  const auto t0 = std::chrono::steady_clock::now();
  while (waitpid(pid, &st, WNOHANG) == 0) {
    ASSERT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(60)) << "the job hangs";
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_NE(std::atoi(slurp_file(status).c_str()), 0);
  const std::string err = slurp_file(log);
  EXPECT_NE(err.find("mpirun is stopping the job"), std::string::npos) << err;
  fs::remove_all(tmp);
}
#endif
