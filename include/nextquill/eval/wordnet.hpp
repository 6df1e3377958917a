#pragma once
// Read-only WordNet 3.0 from its dictionary files (index.{noun,verb,adj,adv},
// data.*, *.exc; Debian package `wordnet-base` installs them in
// /usr/share/wordnet), giving the synonyms nltk's METEOR uses:
//
//   synonyms(w) = { lemma.name() for synset in nltk wordnet.synsets(w)
//                   for lemma in synset.lemmas() if "_" not in lemma.name() }
//
// where synsets(w) (nltk 3.10, all parts of speech) lower-cases w and, for each
// of noun, verb, adjective, adverb, runs morphy: the base forms listed for w in
// <pos>.exc if w is there, else w with each of the part of speech's suffix rules
// applied once (nouns: s, ses, ves, xes, zes, ches, shes, men, ies; verbs: s, ies,
// es, ed, ing; adjectives: er, est), keeping w itself and those forms that
// index.<pos> lists; then takes the synsets index.<pos> gives each form. Lemma
// names keep the case of data.<pos> and lose adjective markers such as "(a)".
//
// The index and exception files are read when the object is built (about 6 MB,
// some tens of milliseconds); a synset's line in data.<pos> is read on first use.
// Lookups are cached and thread-safe.
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "nextquill/core/error.hpp"
#include "nextquill/eval/text.hpp"

namespace nq::eval {

class WordNet {
 public:
  static constexpr const char* kDefaultDir = "/usr/share/wordnet";

  // Loads the dictionary in dir; throws nq::Error when a file is missing or malformed.
  explicit WordNet(std::string dir) : dir_(std::move(dir)) {
    for (size_t p = 0; p < kNumPos; ++p) {
      index_text_[p] = read_file(dir_ + "/index." + kPosFile[p]);
      index_lines(p);
      load_exceptions(p);
      data_[p].open(dir_ + "/data." + kPosFile[p], std::ios::binary);
      NQ_CHECK(data_[p].good(), "eval::WordNet", "cannot open ", dir_, "/data.", kPosFile[p]);
    }
  }

  WordNet(const WordNet&) = delete;
  WordNet& operator=(const WordNet&) = delete;

  const std::string& dir() const { return dir_; }

  // True when dir holds the files WordNet needs.
  static bool available(const std::string& dir) {
    namespace fs = std::filesystem;
    std::error_code ec;
    for (const char* p : kPosFile)
      for (const char* kind : {"index.", "data."})
        if (!fs::is_regular_file(dir + "/" + kind + p, ec)) return false;
    return true;
  }

  // The directories searched, in order: explicit_dir alone when it is not
  // empty; else $NQ_WORDNET_DIR (when set and not empty), then /usr/share/wordnet.
  static std::vector<std::string> search_dirs(const std::string& explicit_dir = "") {
    if (!explicit_dir.empty()) return {explicit_dir};
    std::vector<std::string> dirs;
    if (const char* env = std::getenv("NQ_WORDNET_DIR"); env != nullptr && *env != '\0')
      dirs.emplace_back(env);
    dirs.emplace_back(kDefaultDir);
    return dirs;
  }

  // The first of search_dirs(explicit_dir) that holds the dictionary, or "".
  static std::string find_dir(const std::string& explicit_dir = "") {
    for (const std::string& d : search_dirs(explicit_dir))
      if (available(d)) return d;
    return "";
  }

  // The WordNet in find_dir(dir), loaded once per directory and shared; null
  // when no searched directory holds the dictionary files.
  static std::shared_ptr<const WordNet> open(const std::string& dir = "") {
    const std::string d = find_dir(dir);
    if (d.empty()) return nullptr;
    static std::mutex mu;
    static std::map<std::string, std::shared_ptr<const WordNet>> cache;
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find(d);
    if (it != cache.end()) return it->second;
    auto wn = std::make_shared<const WordNet>(d);
    cache.emplace(d, wn);
    return wn;
  }

  // The lemma names without '_' of all synsets of word (see the top of the file),
  // sorted, without duplicates.
  const std::vector<std::string>& synonyms(const std::string& word) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = syn_cache_.find(word);
    if (it != syn_cache_.end()) return it->second;
    std::vector<std::string> names;
    const std::string w = text::py_lower(word);
    for (size_t p = 0; p < kNumPos; ++p)
      for (const std::string& form : morphy(w, p))
        for (uint32_t off : offsets(form, p))
          for (std::string& name : lemma_names(p, off))
            if (name.find('_') == std::string::npos) names.push_back(std::move(name));
    std::sort(names.begin(), names.end());
    names.erase(std::unique(names.begin(), names.end()), names.end());
    return syn_cache_.emplace(word, std::move(names)).first->second;
  }

  // morphy's candidate base forms of a (lower-case) word for one part of speech
  // (0 noun, 1 verb, 2 adjective, 3 adverb) that the index lists, in nltk's order.
  std::vector<std::string> morphy(const std::string& form, size_t pos) const {
    std::vector<std::string> cands{form};
    auto ex = exceptions_[pos].find(form);
    if (ex != exceptions_[pos].end()) {
      cands.insert(cands.end(), ex->second.begin(), ex->second.end());
    } else {
      for (const auto& [old_suffix, new_suffix] : kRules[pos]) {
        const std::string_view o(old_suffix);
        if (form.size() >= o.size() && std::string_view(form).substr(form.size() - o.size()) == o)
          cands.push_back(form.substr(0, form.size() - o.size()) + new_suffix);
      }
    }
    std::vector<std::string> out;
    for (std::string& c : cands) {
      if (index_[pos].count(c) == 0) continue;
      bool seen = false;
      for (const std::string& o : out) seen = seen || o == c;
      if (!seen) out.push_back(std::move(c));
    }
    return out;
  }

 private:
  static constexpr size_t kNumPos = 4;
  static constexpr const char* kPosFile[kNumPos] = {"noun", "verb", "adj", "adv"};
  using RuleList = std::vector<std::pair<const char*, const char*>>;
  inline static const std::array<RuleList, kNumPos> kRules = {
      RuleList{{"s", ""},
               {"ses", "s"},
               {"ves", "f"},
               {"xes", "x"},
               {"zes", "z"},
               {"ches", "ch"},
               {"shes", "sh"},
               {"men", "man"},
               {"ies", "y"}},
      RuleList{{"s", ""},
               {"ies", "y"},
               {"es", "e"},
               {"es", ""},
               {"ed", "e"},
               {"ed", ""},
               {"ing", "e"},
               {"ing", ""}},
      RuleList{{"er", ""}, {"est", ""}, {"er", "e"}, {"est", "e"}},
      RuleList{},
  };

  static std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    NQ_CHECK(in.good(), "eval::WordNet", "cannot open ", path);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }

  static std::vector<std::string_view> split_ws(std::string_view line) {
    std::vector<std::string_view> out;
    size_t i = 0;
    while (i < line.size()) {
      while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r' || line[i] == '\n'))
        ++i;
      const size_t s = i;
      while (i < line.size() && !(line[i] == ' ' || line[i] == '\t' || line[i] == '\r' || line[i] == '\n'))
        ++i;
      if (i > s) out.push_back(line.substr(s, i - s));
    }
    return out;
  }

  // Maps each lemma of index.<pos> to its line (later lines win, as in nltk).
  void index_lines(size_t p) {
    const std::string_view t(index_text_[p]);
    auto& idx = index_[p];
    idx.reserve(t.size() / 40);
    for (size_t pos = 0; pos < t.size();) {
      size_t end = t.find('\n', pos);
      if (end == std::string_view::npos) end = t.size();
      const std::string_view line = t.substr(pos, end - pos);
      pos = end + 1;
      if (line.empty() || line[0] == ' ') continue;
      const size_t sp = line.find(' ');
      NQ_CHECK(sp != std::string_view::npos && sp > 0, "eval::WordNet", "malformed line in ", dir_, "/index.",
               kPosFile[p], ": ", line.substr(0, 80));
      idx[std::string(line.substr(0, sp))] = line;
    }
  }

  void load_exceptions(size_t p) {
    const std::string path = dir_ + "/" + kPosFile[p] + ".exc";
    std::ifstream in(path, std::ios::binary);
    if (!in.good()) return;  // nltk needs them; without one, morphy uses the rules alone
    std::string line;
    while (std::getline(in, line)) {
      std::vector<std::string_view> terms = split_ws(line);
      if (terms.empty()) continue;
      std::vector<std::string> bases(terms.begin() + 1, terms.end());
      exceptions_[p][std::string(terms[0])] = std::move(bases);
    }
  }

  // Synset offsets of a lemma in index.<pos>: "lemma pos synset_cnt p_cnt
  // [ptr_symbol...] sense_cnt tagsense_cnt synset_offset...".
  std::vector<uint32_t> offsets(const std::string& lemma, size_t p) const {
    auto it = index_[p].find(lemma);
    if (it == index_[p].end()) return {};
    const std::vector<std::string_view> f = split_ws(it->second);
    auto bad = [&] {
      fail("eval::WordNet", "malformed line in ", dir_, "/index.", kPosFile[p], ": ", it->second);
    };
    if (f.size() < 4) bad();
    const size_t n_synsets = std::strtoul(std::string(f[2]).c_str(), nullptr, 10);
    const size_t n_ptrs = std::strtoul(std::string(f[3]).c_str(), nullptr, 10);
    const size_t first = 4 + n_ptrs + 2;
    if (f.size() < first + n_synsets) bad();
    std::vector<uint32_t> out;
    for (size_t k = 0; k < n_synsets; ++k)
      out.push_back(uint32_t(std::strtoul(std::string(f[first + k]).c_str(), nullptr, 10)));
    return out;
  }

  // Lemma names of the synset at byte offset off of data.<pos> (cached):
  // "offset lex_filenum ss_type w_cnt(hex) word lex_id ...".
  std::vector<std::string> lemma_names(size_t p, uint32_t off) const {
    auto key = (uint64_t(p) << 32) | off;
    auto it = synset_cache_.find(key);
    if (it != synset_cache_.end()) return it->second;
    std::ifstream& in = data_[p];
    in.clear();
    in.seekg(std::streamoff(off));
    std::string line;
    std::getline(in, line);
    const std::vector<std::string_view> f = split_ws(line);
    auto bad = [&] {
      fail("eval::WordNet", "no synset at offset ", off, " of ", dir_, "/data.", kPosFile[p]);
    };
    if (f.size() < 4 || std::strtoul(std::string(f[0]).c_str(), nullptr, 10) != off) bad();
    const size_t n = std::strtoul(std::string(f[3]).c_str(), nullptr, 16);
    if (f.size() < 4 + 2 * n) bad();
    std::vector<std::string> names;
    for (size_t k = 0; k < n; ++k) {
      std::string_view name = f[4 + 2 * k];
      // Adjective syntactic markers: "name(a)", "name(p)", "name(ip)".
      if (!name.empty() && name.back() == ')') {
        const size_t open = name.rfind('(');
        if (open != std::string_view::npos &&
            name.substr(open + 1, name.size() - open - 2).find_first_of("()") == std::string_view::npos)
          name = name.substr(0, open);
      }
      names.emplace_back(name);
    }
    synset_cache_.emplace(key, names);
    return names;
  }

  std::string dir_;
  std::array<std::string, kNumPos> index_text_;
  std::array<std::unordered_map<std::string, std::string_view>, kNumPos> index_;
  std::array<std::unordered_map<std::string, std::vector<std::string>>, kNumPos> exceptions_;
  mutable std::array<std::ifstream, kNumPos> data_;
  mutable std::mutex mu_;
  mutable std::unordered_map<std::string, std::vector<std::string>> syn_cache_;
  mutable std::unordered_map<uint64_t, std::vector<std::string>> synset_cache_;
};

}  // namespace nq::eval
