// The 20-line example of docs/architecture.md: fit y = x w + b by gradient descent.
#include <cstdio>
#include <nextquill/nextquill.hpp>

int main() {
  nq::Generator gen(0);
  nq::Tensor x = nq::randn({256, 3}, nq::kFloat32, &gen);  // inputs
  nq::Tensor true_w = nq::from_vector<float>({2, -1, 0.5}, {3, 1});
  nq::Tensor y = nq::matmul(x, true_w) + 0.3;  // targets
  nq::Tensor w = nq::zeros({3, 1}).requires_grad_();
  nq::Tensor b = nq::zeros({1}).requires_grad_();
  for (int step = 0; step < 200; ++step) {
    nq::Tensor loss = nq::square(nq::matmul(x, w) + b - y).mean();
    w.zero_grad();
    b.zero_grad();
    loss.backward();
    nq::NoGradGuard no_grad;  // plain SGD update
    w.copy_(w - w.grad() * 0.1);
    b.copy_(b - b.grad() * 0.1);
    if (step % 50 == 0) std::printf("step %d loss %.5f\n", step, loss.item());
  }
  std::printf("w = [%.3f %.3f %.3f], b = %.3f\n", w.to_vector<float>()[0], w.to_vector<float>()[1],
              w.to_vector<float>()[2], b.item());
}
