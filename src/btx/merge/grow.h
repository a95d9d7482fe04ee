// Growing the forest after the fact (BTM's incremental growth, Li et al. 2022,
// arXiv:2208.03306): a new expert starts from the parameter average of the trained
// experts weighted by their domain posterior on its own domains' held-out text, instead of from
// the seed. It only creates the expert's folder; training it is `btx train` as for any expert.
#pragma once

#include <map>
#include <string>

#include "btx/run/experts.h"

namespace btx {

// Adds experts/<name>/: initialised from the posterior-weighted parameter average of the
// existing trained experts on its domains' validation data, or from the seed when there are
// none. An existing name, an unknown domain or an unfinished seed is an error.
ExpertSpec grow_expert(const Run& run, const std::string& name,
                       const std::map<std::string, double>& domains);

}  // namespace btx
