// See interrupt.hpp. POSIX only (sigaction): Python installs its SIGINT handler with sigaction too, and
// ours forwards to it, so that Python sees every signal exactly as without pykmr. On other systems the
// runs are not interruptible (interrupt stays null).
#include "interrupt.hpp"

#include <pybind11/pybind11.h>

#include <csignal>
#include <type_traits>

#include "kmr/runtime/error.hpp"

#if defined(__unix__) || defined(__APPLE__)
#define KMR_PY_SIGACTION 1
#include <signal.h>
#endif

namespace py = pybind11;

namespace kmr::python {
namespace {

// The kernels read the flag as a `const volatile int*` (kernel_abi.h); a handler may only write a
// volatile sig_atomic_t.
static_assert(std::is_same<std::sig_atomic_t, int>::value, "kmr: sig_atomic_t is expected to be int");
volatile std::sig_atomic_t g_interrupted = 0;

#if KMR_PY_SIGACTION
struct sigaction g_python_action;  // Python's handler, restored when the run ends

extern "C" void on_sigint(int sig, siginfo_t* info, void* context) {
  g_interrupted = 1;
  if (g_python_action.sa_flags & SA_SIGINFO) {
    g_python_action.sa_sigaction(sig, info, context);
  } else {
    g_python_action.sa_handler(sig);
  }
}

// Installs on_sigint for the lifetime of the scope, if SIGINT has a handler function (Python's: not
// SIG_DFL or SIG_IGN, which a user may have chosen and which we leave alone).
class SigintScope {
 public:
  SigintScope() {
    struct sigaction current;
    if (sigaction(SIGINT, nullptr, &current) != 0) return;
    const bool function = (current.sa_flags & SA_SIGINFO)
                              ? current.sa_sigaction != nullptr
                              : current.sa_handler != SIG_DFL && current.sa_handler != SIG_IGN;
    if (!function) return;
    g_python_action = current;
    g_interrupted = 0;
    struct sigaction ours = current;  // same mask and flags (SA_ONSTACK...), our function
    ours.sa_flags |= SA_SIGINFO;
    ours.sa_sigaction = &on_sigint;
    installed_ = sigaction(SIGINT, &ours, nullptr) == 0;
  }
  ~SigintScope() {
    if (installed_) sigaction(SIGINT, &g_python_action, nullptr);
  }
  SigintScope(const SigintScope&) = delete;
  SigintScope& operator=(const SigintScope&) = delete;
  const volatile int* flag() const { return installed_ ? &g_interrupted : nullptr; }

 private:
  bool installed_ = false;
};
#else
class SigintScope {
 public:
  const volatile int* flag() const { return nullptr; }
};
#endif

// Python delivers signals to its main thread only: runs on other threads are not interrupted.
bool on_main_thread() {
  static py::object* main_thread = new py::object(py::module_::import("threading").attr("main_thread"));
  const py::object ident = (*main_thread)().attr("ident");
  return !ident.is_none() && ident.cast<unsigned long>() == PyThread_get_thread_ident();
}

}  // namespace

void run_interruptibly(const std::function<void(const volatile int*)>& body) {
  if (!on_main_thread()) {
    py::gil_scoped_release release;
    body(nullptr);
    return;
  }
  for (;;) {
    {
      SigintScope scope;
      try {
        py::gil_scoped_release release;
        body(scope.flag());
        return;
      } catch (const kmr::Error& e) {
        if (e.kind() != kmr::ErrorKind::Interrupted) throw;
      }
    }  // Python's handler is back in place
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
  }
}

}  // namespace kmr::python
