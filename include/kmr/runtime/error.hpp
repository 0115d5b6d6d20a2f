// The one exception type of libkmr. `kind` lets bindings pick ValueError,
// TypeError or RuntimeError without parsing messages.
#pragma once
#include <stdexcept>
#include <string>

namespace kmr {

enum class ErrorKind {
  Value,        // bad formula, alias, dimension, size, reduction option
  Type,         // wrong dtype / argument type
  Runtime,      // compiler missing or failed, cache refused, driver failure
  Interrupted,  // RunOptions::interrupt was set during a run (Python: the signal's own exception)
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& msg) : std::runtime_error(msg), kind_(kind) {}
  ErrorKind kind() const noexcept { return kind_; }

 private:
  ErrorKind kind_;
};

}  // namespace kmr
