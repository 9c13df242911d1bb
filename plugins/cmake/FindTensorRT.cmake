#[=======================================================================[.rst:
FindTensorRT
------------

Finds NVIDIA TensorRT: its headers and, where there is one, its ``nvinfer`` library.

Where it looks, first match wins. Only these places are searched, never the system folders,
so what is found is always what was asked for::

  TensorRT_ROOT or TENSORRT_ROOT      CMake variables: an installation with include/ and lib/
  TensorRT_INCLUDE_DIR                CMake variable: an include/ folder alone (headers only,
                                      no library is looked for)
  TensorRT_ROOT or TENSORRT_ROOT      environment variables: as the CMake variables
  the Python tensorrt packages        unless TensorRT_FROM_PYTHON is OFF; pip wheels usually
                                      carry the library and no headers

Everything is searched afresh on every configure, so changing a hint never keeps a stale
result from the cache.

Components: ``nvinfer``. ``find_package(TensorRT)`` is satisfied by the headers alone;
``find_package(TensorRT COMPONENTS nvinfer)`` also needs the library.

Imported targets:

``TensorRT::headers``
  INTERFACE: the include folder (a system include for its users, so their warnings flags do
  not apply to TensorRT's own headers). TensorRT's headers include ``cuda_runtime_api.h``:
  users also need the CUDA toolkit's headers (``CUDA::toolkit`` or ``CUDA::cudart``).
``TensorRT::nvinfer``
  SHARED: libnvinfer, with ``TensorRT::headers``; only where the library was found.

Result variables:

``TensorRT_FOUND``, ``TensorRT_nvinfer_FOUND``
``TensorRT_VERSION`` (``TensorRT_VERSION_MAJOR``, ``_MINOR``, ``_PATCH``), from NvInferVersion.h
``TensorRT_INCLUDE_DIRS``, ``TensorRT_LIBRARIES`` (empty without the library)
``TensorRT_SEARCHED``: where the headers were looked for, in words, for messages
#]=======================================================================]

set(_TensorRT_include_hints "")
set(_TensorRT_library_hints "")
set(TensorRT_SEARCHED "")
if(NOT DEFINED TensorRT_FROM_PYTHON)
  set(TensorRT_FROM_PYTHON ON)
endif()

foreach(_TensorRT_hint IN ITEMS TensorRT_ROOT TENSORRT_ROOT)
  if(${_TensorRT_hint})
    set(_TensorRT_root "${${_TensorRT_hint}}")
    set(TensorRT_SEARCHED "${_TensorRT_hint}=${_TensorRT_root}")
    break()
  endif()
endforeach()
if(NOT TensorRT_SEARCHED AND TensorRT_INCLUDE_DIR)
  set(TensorRT_SEARCHED "TensorRT_INCLUDE_DIR=${TensorRT_INCLUDE_DIR}")
  list(APPEND _TensorRT_include_hints "${TensorRT_INCLUDE_DIR}")
endif()
if(NOT TensorRT_SEARCHED)
  foreach(_TensorRT_hint IN ITEMS TensorRT_ROOT TENSORRT_ROOT)
    if(DEFINED ENV{${_TensorRT_hint}} AND NOT "$ENV{${_TensorRT_hint}}" STREQUAL "")
      set(_TensorRT_root "$ENV{${_TensorRT_hint}}")
      set(TensorRT_SEARCHED "environment ${_TensorRT_hint}=${_TensorRT_root}")
      break()
    endif()
  endforeach()
endif()
if(_TensorRT_root)
  list(APPEND _TensorRT_include_hints "${_TensorRT_root}/include")
  list(APPEND _TensorRT_library_hints "${_TensorRT_root}/lib" "${_TensorRT_root}/lib64")
endif()

if(NOT TensorRT_SEARCHED AND TensorRT_FROM_PYTHON)
  set(TensorRT_SEARCHED "the Python tensorrt package")
  find_package(Python3 COMPONENTS Interpreter QUIET)
  if(Python3_Interpreter_FOUND)
    # find_spec locates the packages without importing them (importing tensorrt loads CUDA).
    execute_process(
      COMMAND "${Python3_EXECUTABLE}" -c [=[
import importlib.util
for name in ("tensorrt_libs", "tensorrt"):
    try:
        spec = importlib.util.find_spec(name)
    except Exception:
        continue
    for path in (spec.submodule_search_locations or []) if spec else []:
        print(path)
]=]
      OUTPUT_VARIABLE _TensorRT_python_dirs
      RESULT_VARIABLE _TensorRT_python_status
      ERROR_QUIET OUTPUT_STRIP_TRAILING_WHITESPACE)
    if(_TensorRT_python_status EQUAL 0 AND _TensorRT_python_dirs)
      string(REPLACE "\n" ";" _TensorRT_python_dirs "${_TensorRT_python_dirs}")
      foreach(_TensorRT_dir IN LISTS _TensorRT_python_dirs)
        list(APPEND _TensorRT_include_hints "${_TensorRT_dir}/include")
        list(APPEND _TensorRT_library_hints "${_TensorRT_dir}" "${_TensorRT_dir}/lib")
      endforeach()
    endif()
  endif()
endif()

unset(_TensorRT_HEADER_DIR CACHE)
unset(_TensorRT_NVINFER CACHE)
if(_TensorRT_include_hints)
  find_path(_TensorRT_HEADER_DIR NAMES NvInferRuntime.h HINTS ${_TensorRT_include_hints} NO_DEFAULT_PATH)
endif()
if(_TensorRT_library_hints)
  # Wheels ship only the versioned file (libnvinfer.so.10), hence the explicit names.
  find_library(_TensorRT_NVINFER NAMES nvinfer libnvinfer.so.11 libnvinfer.so.10 nvinfer_11 nvinfer_10
               HINTS ${_TensorRT_library_hints} NO_DEFAULT_PATH)
endif()
mark_as_advanced(_TensorRT_HEADER_DIR _TensorRT_NVINFER)

set(TensorRT_INCLUDE_DIRS "")
set(TensorRT_LIBRARIES "")
set(TensorRT_nvinfer_FOUND FALSE)
unset(TensorRT_VERSION)
if(_TensorRT_HEADER_DIR)
  set(TensorRT_INCLUDE_DIRS "${_TensorRT_HEADER_DIR}")
  if(_TensorRT_NVINFER)
    set(TensorRT_LIBRARIES "${_TensorRT_NVINFER}")
    set(TensorRT_nvinfer_FOUND TRUE)
  endif()
  # 10.x up to 10.1x writes NV_TENSORRT_MAJOR 10; later 10.x and 11.x write the numbers into
  # TRT_MAJOR_ENTERPRISE... and define NV_TENSORRT_MAJOR as that name.
  if(EXISTS "${_TensorRT_HEADER_DIR}/NvInferVersion.h")
    file(STRINGS "${_TensorRT_HEADER_DIR}/NvInferVersion.h" _TensorRT_version_lines
         REGEX "^#define +(NV_TENSORRT|TRT)_(MAJOR|MINOR|PATCH)(_ENTERPRISE)? +[0-9]+")
    foreach(_TensorRT_part MAJOR MINOR PATCH)
      string(REGEX MATCH "_${_TensorRT_part}(_ENTERPRISE)? +([0-9]+)" _TensorRT_match "${_TensorRT_version_lines}")
      set(TensorRT_VERSION_${_TensorRT_part} "${CMAKE_MATCH_2}")
    endforeach()
    if(NOT "${TensorRT_VERSION_MAJOR}" STREQUAL "" AND NOT "${TensorRT_VERSION_MINOR}" STREQUAL ""
       AND NOT "${TensorRT_VERSION_PATCH}" STREQUAL "")
      set(TensorRT_VERSION "${TensorRT_VERSION_MAJOR}.${TensorRT_VERSION_MINOR}.${TensorRT_VERSION_PATCH}")
    endif()
  endif()
endif()

if(NOT TensorRT_SEARCHED)
  set(_TensorRT_reason "set TensorRT_ROOT or TensorRT_INCLUDE_DIR")
elseif(NOT _TensorRT_HEADER_DIR)
  set(_TensorRT_reason "no NvInferRuntime.h found from ${TensorRT_SEARCHED}")
elseif(NOT _TensorRT_library_hints)
  set(_TensorRT_reason "no nvinfer library looked for: ${TensorRT_SEARCHED} gives headers only")
else()
  set(_TensorRT_reason "no nvinfer library found from ${TensorRT_SEARCHED}")
endif()
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(TensorRT
  REQUIRED_VARS TensorRT_INCLUDE_DIRS
  VERSION_VAR TensorRT_VERSION
  HANDLE_COMPONENTS
  REASON_FAILURE_MESSAGE "${_TensorRT_reason}")

if(TensorRT_FOUND AND NOT TARGET TensorRT::headers)
  add_library(TensorRT::headers INTERFACE IMPORTED)
  set_target_properties(TensorRT::headers PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${TensorRT_INCLUDE_DIRS}")
endif()
if(TensorRT_FOUND AND TensorRT_nvinfer_FOUND AND NOT TARGET TensorRT::nvinfer)
  # Imported, so the exact file is linked: a bare path to libnvinfer.so.10 would become
  # -lnvinfer, which a wheel (no unversioned symlink) cannot satisfy.
  add_library(TensorRT::nvinfer SHARED IMPORTED)
  set_target_properties(TensorRT::nvinfer PROPERTIES
    IMPORTED_LOCATION "${TensorRT_LIBRARIES}" INTERFACE_LINK_LIBRARIES TensorRT::headers)
endif()

unset(_TensorRT_include_hints)
unset(_TensorRT_library_hints)
unset(_TensorRT_root)
unset(_TensorRT_reason)
