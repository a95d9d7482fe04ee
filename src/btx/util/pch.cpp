// Compiled once to produce the shared precompiled header (see CMakeLists.txt).
