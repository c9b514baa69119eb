// protoseg_infer: class probabilities of images (or of hits) with an exported protoseg model, from C++.
//
//   protoseg_infer MODEL.pt INPUT.npy OUTPUT.npy [--normalise none|max|log] [--threads N]
//   protoseg_infer MODEL.pt HITS.npy OUTPUT.npy --hits [--threads N]
//
// --hits: MODEL.pt is a hit-level model (`protoseg export` of a sparse_unet model); HITS.npy holds one
// event's collection hits as float32 [n, 4] with the columns wire (0..1439, global: wire + 480 x APA),
// peak tick (0..5999), integral (ADC*tick) and rms (ticks); OUTPUT.npy gets float32 [n, C], the class
// probabilities of each hit in the input's order. The model builds its sites itself.
//
// MODEL.pt is `protoseg export MODEL --format torchscript -o MODEL.pt`: it takes [N, 1, H, W] float32
// and returns softmax probabilities [N, C, H, W], any N, H and W. INPUT.npy holds float32 images
// [H, W], [N, H, W] or [N, 1, H, W] (numpy: np.save(path, x.astype('<f4'))); OUTPUT.npy gets the
// probabilities as float32 [N, C, H, W]. --normalise applies the per-image normalisation named in
// the model card (MODEL.pt.json, input.normalisation) to raw ADC images; the default "none" takes
// images that are already normalised. Bad input: one line on stderr, exit code 2, no output written.
//
// This is the whole of what a LArSoft module needs: torch::jit::load once, then forward per event.
#include <ATen/Parallel.h>
#include <torch/script.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

namespace {

struct InputError {
  std::string message;
};

[[noreturn]] void fail(const std::string& path, const std::string& problem) { throw InputError{path + ": " + problem}; }

// One line of a libtorch error: errors raised inside the TorchScript interpreter print a script
// traceback and end with the original error; others start with it (a C++ backtrace may follow).
std::string one_line(const std::exception& error) {
  const auto* c10_error = dynamic_cast<const c10::Error*>(&error);
  std::string text = c10_error ? c10_error->what_without_backtrace() : error.what();
  if (text.rfind("The following operation failed in the TorchScript interpreter", 0) == 0) {
    text.erase(text.find_last_not_of("\n ") + 1);
    return text.substr(text.rfind('\n') + 1);
  }
  return text.substr(0, text.find('\n'));
}

// Value of `'key': ...` in a .npy header (a Python dict literal), up to the next `,` or `)`.
std::string header_field(const std::string& header, const std::string& key, const std::string& path) {
  const auto at = header.find("'" + key + "':");
  if (at == std::string::npos) fail(path, "not a valid .npy file (no '" + key + "' in its header)");
  const auto begin = header.find_first_not_of(' ', at + key.size() + 3);
  const auto end = begin == std::string::npos ? begin : header.find_first_of(header[begin] == '(' ? ")" : ",}", begin);
  if (end == std::string::npos) fail(path, "not a valid .npy file (cannot read '" + key + "' in its header)");
  return header.substr(begin, end - begin + (header[begin] == '('));
}

// Read a little-endian float32 .npy file (format versions 1-3, C order) into a tensor [N, 1, H, W].
torch::Tensor read_npy(const std::string& path, bool hits) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) fail(path, std::filesystem::exists(path) ? "cannot be read" : "no such file");
  const std::uint64_t file_size = in.tellg();
  in.seekg(0);
  char preamble[12] = {};
  in.read(preamble, sizeof preamble);
  if (in.gcount() < 10 || std::string(preamble, 6) != "\x93NUMPY") fail(path, "not a .npy file (write it with numpy.save)");
  const int major = static_cast<unsigned char>(preamble[6]);
  if (major < 1 || major > 3) fail(path, ".npy format version " + std::to_string(major) + " is not supported (1-3)");
  // Version 1 stores the header length in 2 bytes, versions 2 and 3 in 4 (always little-endian).
  const auto byte = [&](int i) { return std::uint64_t(static_cast<unsigned char>(preamble[i])); };
  const std::uint64_t start = major == 1 ? 10 : 12;
  const std::uint64_t header_size = major == 1 ? byte(8) | byte(9) << 8 : byte(8) | byte(9) << 8 | byte(10) << 16 | byte(11) << 24;
  if (start + header_size > file_size) fail(path, "truncated .npy header");
  std::string header(header_size, ' ');
  in.seekg(start);
  in.read(header.data(), header_size);

  const std::string descr = header_field(header, "descr", path);
  if (descr != "'<f4'") fail(path, "dtype " + descr + ", expected little-endian float32 '<f4' (x.astype('<f4'))");
  if (header_field(header, "fortran_order", path) != "False") fail(path, "Fortran-ordered array; save a C-ordered one (np.ascontiguousarray)");
  std::vector<std::int64_t> shape;
  std::uint64_t count = 1;
  const std::string dims = header_field(header, "shape", path);
  for (std::size_t i = 1; i < dims.size();) {
    const auto next = dims.find_first_of(",)", i);
    const auto digits = dims.substr(i, next - i);
    if (digits.find_first_not_of(' ') != std::string::npos) {
      if (digits.find_first_not_of(" 0123456789") != std::string::npos || digits.size() > 12)
        fail(path, "bad shape " + dims + " in the .npy header");
      shape.push_back(std::stoll(digits));
      // Capped at one more than the file's size, so a huge shape cannot overflow the product.
      count = shape.back() > 0 && count > file_size / shape.back() ? file_size + 1 : count * shape.back();
    }
    i = next + 1;
  }
  if (hits) {
    if (shape.size() != 2 || shape[1] != 4) fail(path, "shape " + dims + ", expected hits [n, 4]: wire, tick, integral, rms");
    const std::uint64_t hit_data = start + header_size;
    if (file_size - hit_data != count * 4)
      fail(path, "holds " + std::to_string(file_size - hit_data) + " bytes of data, shape " + dims + " needs " +
                     (count > file_size ? "more" : std::to_string(count * 4)) + " (truncated or damaged)");
    torch::Tensor table = torch::empty({shape[0], 4}, torch::kFloat32);
    in.seekg(hit_data);
    in.read(reinterpret_cast<char*>(table.data_ptr<float>()), count * 4);
    if (!in) fail(path, "read failed");
    // The checks protoseg's Python applies to hits: finite values inside the readout.
    const auto wire = table.select(1, 0), tick = table.select(1, 1), integral = table.select(1, 2), rms = table.select(1, 3);
    if (!torch::isfinite(table).all().item<bool>()) fail(path, "holds a NaN or infinite value");
    if ((wire < 0).any().item<bool>() || (wire > 1439).any().item<bool>() || (wire != torch::floor(wire)).any().item<bool>())
      fail(path, "wire outside the 1440 collection wires 0..1439 (or not a whole number)");
    if ((tick < 0).any().item<bool>() || (tick >= 6000).any().item<bool>()) fail(path, "tick outside the readout window [0, 6000)");
    if ((integral < 0).any().item<bool>() || (rms < 0).any().item<bool>()) fail(path, "negative integral or rms");
    return table;
  }
  // The network takes one plane: [H, W] and [N, H, W] gain the missing axes, [N, 1, H, W] is as is.
  if (shape.size() == 4 && shape[1] == 1) shape.erase(shape.begin() + 1);
  if (shape.size() == 2) shape.insert(shape.begin(), 1);
  if (shape.size() != 3) fail(path, "shape " + dims + ", expected [H, W], [N, H, W] or [N, 1, H, W]");
  if (count == 0) fail(path, "holds no pixels (shape " + dims + ")");
  const std::uint64_t data_start = start + header_size;
  if (file_size - data_start != count * 4)
    fail(path, "holds " + std::to_string(file_size - data_start) + " bytes of data, shape " + dims + " needs " +
                   (count > file_size ? "more" : std::to_string(count * 4)) + " (truncated or damaged)");

  torch::Tensor image = torch::empty({shape[0], 1, shape[1], shape[2]}, torch::kFloat32);
  in.read(reinterpret_cast<char*>(image.data_ptr<float>()), count * 4);
  if (!in) fail(path, "read failed");
  return image;
}

// Write float32 [N, C, H, W] as a version-1 .npy file under a temporary name, renamed when complete,
// so a failed run never leaves a half-written output.
void write_npy(const std::string& path, const torch::Tensor& probabilities) {
  const torch::Tensor values = probabilities.to(torch::kFloat32).contiguous();
  std::string shape;
  for (const auto size : values.sizes()) shape += std::to_string(size) + ", ";
  shape.resize(shape.size() - 2);
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + shape + "), }";
  header.append(63 - (10 + header.size()) % 64, ' ');  // numpy aligns the data to 64 bytes
  header += '\n';
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary);
    const std::uint16_t header_size = header.size();
    const char preamble[10] = {'\x93', 'N', 'U', 'M', 'P', 'Y', 1, 0, char(header_size & 0xff), char(header_size >> 8)};
    out.write(preamble, sizeof preamble);
    out << header;
    out.write(reinterpret_cast<const char*>(values.data_ptr<float>()), values.numel() * 4);
    if (!out) {
      std::remove(tmp.c_str());
      fail(path, "cannot write the output (folder missing or not writable?)");
    }
  }
  std::error_code error;
  std::filesystem::rename(tmp, path, error);
  if (error) {
    std::remove(tmp.c_str());
    fail(path, "cannot write the output (" + error.message() + ")");
  }
}

// The per-image normalisation of protoseg.data.normalise, with the same tensor operations:
// "max" divides by the image maximum, "log" is log1p(x) / log1p(max); an empty image stays zero.
torch::Tensor normalise(torch::Tensor x, const std::string& method) {
  if (method == "none") return x;
  if (method == "log") x = torch::log1p(x);
  const torch::Tensor peak = x.amax({-2, -1}, /*keepdim=*/true);
  return torch::where(peak > 0, x / torch::where(peak > 0, peak, torch::ones_like(peak)), torch::zeros_like(x));
}

int run(const std::vector<std::string>& args) {
  std::vector<std::string> files;
  std::string method = "none";
  bool hits = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--hits") {
      hits = true;
      continue;
    }
    if ((args[i] == "--normalise" || args[i] == "--threads") && i + 1 == args.size()) fail(args[i], "needs a value");
    if (args[i] == "--normalise") {
      method = args[++i];
      if (method != "none" && method != "max" && method != "log") fail("--normalise", "'" + method + "' is not none, max or log");
    } else if (args[i] == "--threads") {
      const std::string n = args[++i];
      if (n.empty() || n.size() > 4 || n.find_first_not_of("0123456789") != std::string::npos || std::stoi(n) < 1)
        fail("--threads", "'" + n + "' is not a positive integer");
      at::set_num_threads(std::stoi(n));
    } else {
      files.push_back(args[i]);
    }
  }
  if (files.size() != 3)
    fail("usage", "protoseg_infer MODEL.pt INPUT.npy OUTPUT.npy [--normalise none|max|log] [--threads N], or MODEL.pt HITS.npy OUTPUT.npy --hits");
  if (hits && method != "none") fail("--normalise", "applies to images; a hit-level model takes raw hits (--hits)");
  const std::string &model_path = files[0], &input_path = files[1], &output_path = files[2];

  // Check the input before the (slower) model load, so a bad image is refused at once.
  const torch::Tensor image = hits ? read_npy(input_path, true) : normalise(read_npy(input_path, false), method);
  if (!std::filesystem::is_regular_file(model_path)) fail(model_path, "no such file");
  torch::jit::script::Module model;
  try {
    model = torch::jit::load(model_path, torch::kCPU);
  } catch (const std::exception& error) {
    const std::string why = one_line(error);  // cut miniz's paragraph of advice after its first sentence
    fail(model_path, "not a TorchScript model (export one with protoseg export --format torchscript): " + why.substr(0, why.find(". ")));
  }
  model.eval();  // batch norm uses its running statistics, dropout is off

  torch::NoGradGuard no_grad;  // inference only: no autograd graph is recorded
  torch::jit::IValue output;
  try {
    output = model.forward({image});
  } catch (const std::exception& error) {  // c10::Error, or torch::jit::JITException from the interpreter
    fail(model_path, "forward failed on " + input_path + ": " + one_line(error));
  }
  // The exported contract is probabilities [N, C, H, W] for the [N, 1, H, W] given; check it, since a
  // LArSoft module would otherwise read past the end of a smaller tensor.
  const auto wrong = [&](const std::string& got) { fail(model_path, "returned " + got + ", expected probabilities [N, C, H, W] matching the input"); };
  if (!output.isTensor()) wrong("a " + output.tagKind());
  const torch::Tensor probabilities = output.toTensor();
  if (hits) {
    if (probabilities.dim() != 2 || probabilities.size(0) != image.size(0))
      fail(model_path, "returned shape " + c10::str(probabilities.sizes()) + ", expected probabilities [n, C], one row per hit");
    write_npy(output_path, probabilities);
    std::cout << "wrote " << output_path << ": probabilities " << probabilities.sizes() << "\n";
    return 0;
  }
  if (probabilities.dim() != 4 || probabilities.size(0) != image.size(0) || probabilities.size(2) != image.size(2) ||
      probabilities.size(3) != image.size(3))
    wrong("shape " + c10::str(probabilities.sizes()));
  write_npy(output_path, probabilities);
  std::cout << "wrote " << output_path << ": probabilities " << probabilities.sizes() << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(std::vector<std::string>(argv + 1, argv + argc));
  } catch (const InputError& error) {
    std::cerr << "protoseg_infer: " << error.message << "\n";
    return 2;
  } catch (const std::exception& error) {  // not foreseen above (out of memory, a libtorch failure): still one line
    std::cerr << "protoseg_infer: " << one_line(error) << "\n";
    return 1;
  }
}
