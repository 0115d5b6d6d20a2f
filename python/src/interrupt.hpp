// Ctrl-C during a long CPU reduction: the run is cancelled within a tile of work and the signal's own
// Python exception (KeyboardInterrupt by default) is raised, the process and the JIT cache intact.
#pragma once
#include <functional>

namespace kmr::python {

// Runs body(interrupt) with the GIL released. On Python's main thread, while SIGINT has Python's
// handler, a SIGINT sets *interrupt (the kernel then stops: kmr::ErrorKind::Interrupted) and still
// reaches Python's handler; the handler then runs here, with the GIL: if it raises (KeyboardInterrupt),
// that exception propagates; if it does not (a handler that only logs), body runs again from the start,
// so that the call still returns its whole result. Elsewhere (other threads, Windows) interrupt is null.
// Must be called with the GIL held.
void run_interruptibly(const std::function<void(const volatile int* interrupt)>& body);

}  // namespace kmr::python
