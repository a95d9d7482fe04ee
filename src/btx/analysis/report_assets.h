// The HTML report's embedded files (cmake/report_assets.cmake generates their definitions at
// build time): Chart.js and the page's template, style and script from src/btx/analysis/report/.
#pragma once

#include <string_view>

namespace btx::report_assets {

std::string_view chart_js();   // Debian's chart.min.js (Chart.js 3.9)
std::string_view page_html();  // report/report.html: the page, with @BTX_...@ markers
std::string_view page_css();   // report/report.css
std::string_view page_js();    // report/report.js: builds the page from the data blob
std::string_view sweep_js();   // report/sweep.js: builds a sweep's page from its data
std::string_view common_js();  // report/common.js: helpers both scripts use (loaded first)

}  // namespace btx::report_assets
