#include "export_format.hpp"
namespace shmtrace::cli::exporting {
std::expected<void, std::string> write_otlp(Context&, const OtlpOptions&) { return std::unexpected("todo"); }
}
