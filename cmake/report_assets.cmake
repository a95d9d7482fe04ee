# The HTML report (src/btx/analysis/report.cpp) is one self-contained file that opens without a
# network: Chart.js 3 (Debian's libjs-chart.js) and the page's own template, style and script
# (src/btx/analysis/report/) are embedded into btx_analysis at build time as byte arrays, behind the
# functions of src/btx/analysis/report_assets.h.
set(BTX_CHARTJS /usr/share/javascript/chart.js/chart.min.js
    CACHE FILEPATH "Chart.js 3 (minified UMD build), embedded in the HTML report")
if(NOT EXISTS "${BTX_CHARTJS}")
  message(FATAL_ERROR "${BTX_CHARTJS} not found: btx's HTML report embeds Chart.js. Install it "
                      "with `apt-get install libjs-chart.js`, or set -DBTX_CHARTJS=<chart.min.js>.")
endif()
set(_report_dir ${PROJECT_SOURCE_DIR}/src/btx/analysis/report)
set(_report_inputs ${BTX_CHARTJS} ${_report_dir}/report.html ${_report_dir}/report.css
                   ${_report_dir}/report.js ${_report_dir}/sweep.js
                   ${_report_dir}/common.js)
set(_report_assets "chart_js=${BTX_CHARTJS}|page_html=${_report_dir}/report.html|page_css=${_report_dir}/report.css|page_js=${_report_dir}/report.js|sweep_js=${_report_dir}/sweep.js|common_js=${_report_dir}/common.js")
set(_report_cpp ${CMAKE_BINARY_DIR}/generated/report_assets.cpp)
add_custom_command(
  OUTPUT ${_report_cpp}
  COMMAND ${CMAKE_COMMAND} -DOUT=${_report_cpp} -DNAMESPACE=btx::report_assets
          -DASSETS=${_report_assets} -P ${PROJECT_SOURCE_DIR}/cmake/embed_assets.cmake
  DEPENDS ${_report_inputs} ${PROJECT_SOURCE_DIR}/cmake/embed_assets.cmake
  COMMENT "Embedding Chart.js and the report template"
  VERBATIM)
target_sources(btx_analysis PRIVATE ${_report_cpp})
set_source_files_properties(${_report_cpp} PROPERTIES SKIP_PRECOMPILE_HEADERS ON)
