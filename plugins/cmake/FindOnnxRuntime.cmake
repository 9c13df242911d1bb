#[=======================================================================[.rst:
FindOnnxRuntime
---------------

Finds ONNX Runtime's C API header (``onnxruntime_c_api.h``), all deploykit's custom-op library
needs: the library reaches ONNX Runtime through the ``OrtApiBase`` it is handed, so nothing is
linked. pip's onnxruntime wheels carry no headers; a release archive's ``include/`` does.

Where it looks, first match wins::

  ONNXRUNTIME_INCLUDE_DIR        CMake variable: the include/ folder
  ONNXRUNTIME_ROOT               CMake variable: an installation with include/ (or
                                 include/onnxruntime/)
  DEPLOYKIT_ORT_INCLUDE_DIR      environment: the folder deploykit's first-use build reads
  ONNXRUNTIME_ROOT               environment: as the CMake variable
  /usr/local/include/onnxruntime, /usr/include/onnxruntime

Imported target ``OnnxRuntime::headers`` (INTERFACE, a system include). Result variables:
``OnnxRuntime_FOUND``, ``OnnxRuntime_INCLUDE_DIR``, ``OnnxRuntime_API_VERSION`` (ORT_API_VERSION
of the header), ``OnnxRuntime_SEARCHED`` (where it looked, in words, for messages).
#]=======================================================================]

set(_OnnxRuntime_hints "")
set(OnnxRuntime_SEARCHED "")
if(ONNXRUNTIME_INCLUDE_DIR)
  list(APPEND _OnnxRuntime_hints "${ONNXRUNTIME_INCLUDE_DIR}")
  set(OnnxRuntime_SEARCHED "ONNXRUNTIME_INCLUDE_DIR=${ONNXRUNTIME_INCLUDE_DIR}")
elseif(ONNXRUNTIME_ROOT)
  list(APPEND _OnnxRuntime_hints "${ONNXRUNTIME_ROOT}/include" "${ONNXRUNTIME_ROOT}/include/onnxruntime")
  set(OnnxRuntime_SEARCHED "ONNXRUNTIME_ROOT=${ONNXRUNTIME_ROOT}")
elseif(DEFINED ENV{DEPLOYKIT_ORT_INCLUDE_DIR} AND NOT "$ENV{DEPLOYKIT_ORT_INCLUDE_DIR}" STREQUAL "")
  list(APPEND _OnnxRuntime_hints "$ENV{DEPLOYKIT_ORT_INCLUDE_DIR}")
  set(OnnxRuntime_SEARCHED "DEPLOYKIT_ORT_INCLUDE_DIR=$ENV{DEPLOYKIT_ORT_INCLUDE_DIR}")
elseif(DEFINED ENV{ONNXRUNTIME_ROOT} AND NOT "$ENV{ONNXRUNTIME_ROOT}" STREQUAL "")
  list(APPEND _OnnxRuntime_hints "$ENV{ONNXRUNTIME_ROOT}/include" "$ENV{ONNXRUNTIME_ROOT}/include/onnxruntime")
  set(OnnxRuntime_SEARCHED "ONNXRUNTIME_ROOT=$ENV{ONNXRUNTIME_ROOT} (environment)")
else()
  list(APPEND _OnnxRuntime_hints /usr/local/include/onnxruntime /usr/include/onnxruntime)
  set(OnnxRuntime_SEARCHED "/usr/local/include/onnxruntime, /usr/include/onnxruntime")
endif()

# Searched afresh on every configure: a changed hint never keeps a stale result.
unset(OnnxRuntime_INCLUDE_DIR CACHE)
find_path(OnnxRuntime_INCLUDE_DIR onnxruntime_c_api.h PATHS ${_OnnxRuntime_hints} NO_DEFAULT_PATH NO_CACHE)

set(OnnxRuntime_API_VERSION "")
if(OnnxRuntime_INCLUDE_DIR)
  file(STRINGS "${OnnxRuntime_INCLUDE_DIR}/onnxruntime_c_api.h" _OnnxRuntime_version_line
       REGEX "^#define ORT_API_VERSION [0-9]+")
  string(REGEX REPLACE "^#define ORT_API_VERSION ([0-9]+).*" "\\1" OnnxRuntime_API_VERSION "${_OnnxRuntime_version_line}")
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(OnnxRuntime REQUIRED_VARS OnnxRuntime_INCLUDE_DIR
                                  VERSION_VAR OnnxRuntime_API_VERSION)

if(OnnxRuntime_FOUND AND NOT TARGET OnnxRuntime::headers)
  add_library(OnnxRuntime::headers INTERFACE IMPORTED)
  set_target_properties(OnnxRuntime::headers PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${OnnxRuntime_INCLUDE_DIR}"
                        INTERFACE_SYSTEM_INCLUDE_DIRECTORIES "${OnnxRuntime_INCLUDE_DIR}")
endif()
