#pragma once
// Embedding: a (num, dim) table looked up by int64 ids, as torch.nn.Embedding.
#include "init.hpp"
#include "module.hpp"

namespace nq::nn {

struct EmbeddingOptions {
  int64_t num_embeddings = 0, embedding_dim = 0;
  DType dtype = kFloat32;
  double init_std = 0.02;
};

class Embedding : public Module {
 public:
  Embedding(const EmbeddingOptions& o, Generator& g) : Module("Embedding"), opts_(o) {
    NQ_CHECK(o.num_embeddings > 0 && o.embedding_dim > 0, "Embedding", "sizes must be positive, got ",
             o.num_embeddings, " x ", o.embedding_dim);
    weight = register_parameter("weight",
                                init::normal({o.num_embeddings, o.embedding_dim}, o.init_std, g, o.dtype));
  }
  // ids int64 (...) -> (..., dim)
  Tensor forward(const Tensor& ids) const { return embedding(weight, ids); }
  Tensor operator()(const Tensor& ids) const { return forward(ids); }
  const EmbeddingOptions& options() const { return opts_; }

  Tensor weight;

 private:
  EmbeddingOptions opts_;
};

}  // namespace nq::nn
