// The CLI's deterministic training subsets (cli/dataset.hpp): --max-examples
// picks a fixed subset, --skip-examples a disjoint one from the same order.
#include <doctest/doctest.h>

#include <set>

#include "../cli/dataset.hpp"

namespace {

std::vector<nq::data::Example> numbered(int64_t n) {
  std::vector<nq::data::Example> ex(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) ex[size_t(i)].line = i + 1;
  return ex;
}

std::set<int64_t> lines(const std::vector<nq::data::Example>& ex) {
  std::set<int64_t> s;
  for (const auto& e : ex) s.insert(e.line);
  return s;
}

}  // namespace

TEST_CASE("cli subset: fixed, disjoint with skip, in file order, and clear about an empty remainder") {
  const auto all = numbered(50);
  const auto a = nqcli::subset(all, 20), b = nqcli::subset(all, 20, 20), rest = nqcli::subset(all, 0, 40);
  CHECK(a.size() == 20);
  CHECK(b.size() == 20);
  CHECK(rest.size() == 10);
  CHECK(lines(a) == lines(nqcli::subset(all, 20)));  // the same subset every time
  std::set<int64_t> u = lines(a);
  for (int64_t l : lines(b)) CHECK_MESSAGE(u.insert(l).second, "line ", l, " is in both subsets");
  for (int64_t l : lines(rest)) CHECK_MESSAGE(u.insert(l).second, "line ", l, " is in two subsets");
  CHECK(u.size() == 50);                                                   // the three slices cover the file
  for (size_t i = 1; i < b.size(); ++i) CHECK(b[i - 1].line < b[i].line);  // file order kept
  CHECK(lines(nqcli::subset(all, 25, 0)) != lines(nqcli::subset(all, 25, 25)));
  CHECK(nqcli::subset(all, 0).size() == 50);
  CHECK(nqcli::subset(all, 60, 45).size() == 5);
  CHECK_THROWS_WITH_AS(nqcli::subset(all, 10, 50), doctest::Contains("--skip-examples 50 leaves nothing"),
                       nq::Error);
}
