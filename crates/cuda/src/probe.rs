//! What CUDA this machine has, found without ever letting a missing piece panic: cudarc
//! loads libcuda, NVRTC, cuBLAS and cuBLASLt lazily and panics when one (or one of its
//! symbols) is missing, so every library is located and its symbols checked here first,
//! and nothing else in the crate calls into a library this module has not cleared.

use cudarc::driver::{result as drv, sys as drv_sys};
use std::sync::OnceLock;

/// One CUDA device as the driver reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct CudaDeviceSummary {
    pub ordinal: usize,
    pub name: String,
    /// NVML's spelling, "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", so records match NVML's.
    pub uuid: Option<String>,
    /// e.g. "0000:65:00.0".
    pub pci_bus_id: Option<String>,
    pub compute_capability: (u32, u32),
    pub memory_bytes: u64,
}

/// What a `joulebench devices` listing needs: each library found (with its version) or
/// the reason it is not usable, and the devices.
#[derive(Clone, Debug)]
pub struct CudaProbe {
    /// e.g. Ok("580.65.06 (CUDA 13.0)") or Err("libcuda not found: …").
    pub driver: Result<String, String>,
    /// e.g. Ok("12.9 (libnvrtc.so.12)").
    pub nvrtc: Result<String, String>,
    pub cublas: Result<(), String>,
    pub cublaslt: Result<(), String>,
    pub devices: Vec<CudaDeviceSummary>,
}

// The symbols each library must export for the calls this crate makes (directly or
// through cudarc's safe layer). A library older than these is reported, not called.
const DRIVER_SYMBOLS: &[&str] = &[
    "cuInit",
    "cuDriverGetVersion",
    "cuDeviceGetCount",
    "cuDeviceGet",
    "cuDeviceGetName",
    "cuDeviceGetUuid",
    "cuDeviceGetPCIBusId",
    "cuDeviceTotalMem_v2",
    "cuDeviceGetAttribute",
    "cuDevicePrimaryCtxRetain",
    "cuDevicePrimaryCtxRelease_v2",
    "cuCtxGetCurrent",
    "cuCtxSetCurrent",
    "cuMemGetInfo_v2",
    "cuStreamCreate",
    "cuStreamDestroy_v2",
    "cuStreamSynchronize",
    "cuMemAllocAsync",
    "cuMemFreeAsync",
    "cuMemAlloc_v2",
    "cuMemFree_v2",
    "cuMemcpyHtoDAsync_v2",
    "cuMemcpyDtoHAsync_v2",
    "cuMemsetD8Async",
    "cuModuleLoadData",
    "cuModuleGetFunction",
    "cuModuleUnload",
    "cuFuncGetAttribute",
    "cuFuncSetAttribute",
    "cuLaunchKernel",
    "cuEventCreate",
    "cuEventRecord",
    "cuEventSynchronize",
    "cuEventElapsedTime",
    "cuEventDestroy_v2",
    "cuGetErrorName",
    "cuGetErrorString",
];

const NVRTC_SYMBOLS: &[&str] = &[
    "nvrtcVersion",
    "nvrtcGetNumSupportedArchs",
    "nvrtcGetSupportedArchs",
    "nvrtcCreateProgram",
    "nvrtcCompileProgram",
    "nvrtcDestroyProgram",
    "nvrtcGetProgramLogSize",
    "nvrtcGetProgramLog",
    "nvrtcGetPTXSize",
    "nvrtcGetPTX",
    "nvrtcGetCUBINSize",
    "nvrtcGetCUBIN",
    "nvrtcGetErrorString",
];

const CUBLAS_SYMBOLS: &[&str] = &[
    "cublasCreate_v2",
    "cublasDestroy_v2",
    "cublasSetStream_v2",
    "cublasGemmStridedBatchedEx",
];

const CUBLASLT_SYMBOLS: &[&str] = &[
    "cublasLtCreate",
    "cublasLtDestroy",
    "cublasLtMatmulDescCreate",
    "cublasLtMatmulDescDestroy",
    "cublasLtMatmulDescSetAttribute",
    "cublasLtMatrixLayoutCreate",
    "cublasLtMatrixLayoutDestroy",
    "cublasLtMatrixLayoutSetAttribute",
    "cublasLtMatmulPreferenceCreate",
    "cublasLtMatmulPreferenceDestroy",
    "cublasLtMatmulPreferenceSetAttribute",
    "cublasLtMatmulAlgoGetHeuristic",
    "cublasLtMatmul",
];

/// Find a library the way cudarc will (same names, same order), then check `symbols`.
/// Returns the file name that loaded.
fn locate(lib_names: &[&str], symbols: &[&str]) -> Result<String, String> {
    let candidates: Vec<String> = lib_names
        .iter()
        .flat_map(|n| cudarc::get_lib_name_candidates(n))
        .collect();
    for candidate in &candidates {
        // SAFETY: loading a CUDA library runs its initialisers, which is what cudarc
        // would do next anyway; nothing is called through the handle here.
        let Ok(lib) = (unsafe { libloading::Library::new(candidate) }) else {
            continue;
        };
        let missing: Vec<&str> = symbols
            .iter()
            .copied()
            // SAFETY: only the symbol's presence is checked; the pointer is not used.
            .filter(|s| unsafe { lib.get::<*const ()>(s.as_bytes()) }.is_err())
            .collect();
        if missing.is_empty() {
            return Ok(candidate.clone());
        }
        return Err(format!(
            "{candidate} is too old: it lacks {}",
            missing.join(", ")
        ));
    }
    // The Linux spellings are enough to tell a user what to install or link.
    let prefix = format!("lib{}.so", lib_names[0]);
    let mut tried: Vec<&str> = Vec::new();
    for c in candidates.iter().filter(|c| c.starts_with(&prefix)) {
        if !tried.contains(&c.as_str()) {
            tried.push(c);
        }
    }
    Err(format!(
        "{prefix} not found (tried {}; directories come from LD_LIBRARY_PATH and ldconfig){}",
        tried.join(", "),
        newer_major_hint(lib_names[0])
    ))
}

/// cudarc is built against CUDA 12 bindings and so looks for `.so.12` (and the
/// unversioned name); a CUDA 13-only install is found only through its unversioned
/// development link. Say so when that is the situation.
fn newer_major_hint(lib: &str) -> String {
    if !cfg!(target_os = "linux") {
        return String::new();
    }
    let name = format!("lib{lib}.so.13");
    // SAFETY: as in `locate`.
    match unsafe { libloading::Library::new(&name) } {
        Ok(_) => format!(
            "; {name} is installed, but this build loads lib{lib}.so or lib{lib}.so.12: \
             put a lib{lib}.so link to it on LD_LIBRARY_PATH (the toolkit's -dev package \
             provides one) or install the CUDA 12 library"
        ),
        Err(_) => String::new(),
    }
}

static DRIVER_LIB: OnceLock<Result<String, String>> = OnceLock::new();
static NVRTC_LIB: OnceLock<Result<String, String>> = OnceLock::new();
static CUBLAS_LIB: OnceLock<Result<String, String>> = OnceLock::new();
static CUBLASLT_LIB: OnceLock<Result<String, String>> = OnceLock::new();
static DRIVER_INIT: OnceLock<Result<(), String>> = OnceLock::new();

/// libcuda is present, exports what we call, and `cuInit` succeeded.
pub(crate) fn driver_ready() -> Result<(), String> {
    DRIVER_LIB
        .get_or_init(|| locate(&["cuda", "nvcuda"], DRIVER_SYMBOLS))
        .clone()
        .map_err(|e| format!("CUDA driver unavailable: {e}"))?;
    DRIVER_INIT
        .get_or_init(|| {
            drv::init().map_err(|e| format!("CUDA driver present but cuInit failed: {e}"))
        })
        .clone()
}

/// NVRTC is present and exports what we call; returns the library file name.
pub(crate) fn nvrtc_library() -> Result<String, String> {
    NVRTC_LIB
        .get_or_init(|| locate(&["nvrtc"], NVRTC_SYMBOLS))
        .clone()
        .map_err(|e| format!("NVRTC unavailable: {e}"))
}

pub(crate) fn cublas_library() -> Result<String, String> {
    CUBLAS_LIB
        .get_or_init(|| locate(&["cublas"], CUBLAS_SYMBOLS))
        .clone()
        .map_err(|e| format!("cuBLAS unavailable: {e}"))
}

pub(crate) fn cublaslt_library() -> Result<String, String> {
    CUBLASLT_LIB
        .get_or_init(|| locate(&["cublasLt"], CUBLASLT_SYMBOLS))
        .clone()
        .map_err(|e| format!("cuBLASLt unavailable: {e}"))
}

/// The CUDA version the driver supports, e.g. (13, 0). Call after [`driver_ready`].
fn driver_cuda_version() -> Result<(i32, i32), String> {
    let mut v: std::ffi::c_int = 0;
    // SAFETY: libcuda and the symbol were checked by `driver_ready`.
    unsafe { drv_sys::cuDriverGetVersion(&mut v) }
        .result()
        .map_err(|e| format!("cuDriverGetVersion failed: {e}"))?;
    Ok((v / 1000, (v % 1000) / 10))
}

/// The kernel module's version ("580.65.06") where Linux exposes it; NVML is not needed.
fn kernel_module_version() -> Option<String> {
    let text = std::fs::read_to_string("/proc/driver/nvidia/version").ok()?;
    module_version_of(&text)
}

/// The driver version in /proc/driver/nvidia/version's "Kernel Module" line, e.g.
/// "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release
/// Build …": the first word that is a dotted number.
fn module_version_of(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.contains("Kernel Module"))?;
    line.split_whitespace()
        .find(|w| {
            w.contains('.')
                && w.split('.')
                    .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        })
        .map(str::to_string)
}

/// "580.65.06 (CUDA 13.0)", or just "CUDA 13.0" where the module version is unreadable.
pub(crate) fn driver_description() -> Result<String, String> {
    driver_ready()?;
    let (major, minor) = driver_cuda_version()?;
    Ok(match kernel_module_version() {
        Some(v) => format!("{v} (CUDA {major}.{minor})"),
        None => format!("CUDA {major}.{minor}"),
    })
}

pub(crate) fn format_uuid(bytes: &[u8; 16]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "GPU-{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn pci_bus_id(dev: drv_sys::CUdevice) -> Option<String> {
    let mut buf = [0 as std::ffi::c_char; 32];
    // SAFETY: the buffer length is passed; the symbol was checked by `driver_ready`.
    unsafe { drv_sys::cuDeviceGetPCIBusId(buf.as_mut_ptr(), buf.len() as i32, dev) }
        .result()
        .ok()?;
    let bytes: Vec<u8> = buf
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8(bytes).ok()
}

/// One device's summary. Call after [`driver_ready`].
pub(crate) fn device_summary(ordinal: usize) -> Result<CudaDeviceSummary, String> {
    let dev =
        drv::device::get(ordinal as i32).map_err(|e| format!("CUDA device {ordinal}: {e}"))?;
    let attr = |a| {
        // SAFETY: `dev` came from cuDeviceGet.
        unsafe { drv::device::get_attribute(dev, a) }
            .map_err(|e| format!("CUDA device {ordinal}: attribute query failed: {e}"))
    };
    use drv_sys::CUdevice_attribute::*;
    let major = attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?;
    let minor = attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?;
    Ok(CudaDeviceSummary {
        ordinal,
        name: drv::device::get_name(dev).map_err(|e| format!("CUDA device {ordinal}: {e}"))?,
        uuid: drv::device::get_uuid(dev)
            .ok()
            .map(|u| format_uuid(&u.bytes.map(|b| b as u8))),
        pci_bus_id: pci_bus_id(dev),
        compute_capability: (major.max(0) as u32, minor.max(0) as u32),
        // SAFETY: `dev` came from cuDeviceGet.
        memory_bytes: unsafe { drv::device::total_mem(dev) }.map_or(0, |b| b as u64),
    })
}

/// NVRTC's version, e.g. (12, 9). Checks the library first.
pub(crate) fn nvrtc_version() -> Result<(i32, i32), String> {
    nvrtc_library()?;
    let (mut major, mut minor) = (0, 0);
    // SAFETY: library and symbol checked above.
    unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) }
        .result()
        .map_err(|e| format!("nvrtcVersion failed: {e:?}"))?;
    Ok((major, minor))
}

/// Everything `joulebench devices` shows about CUDA. Never panics: a missing library
/// is a reason string.
pub fn probe() -> CudaProbe {
    let driver = driver_description();
    let devices = if driver.is_ok() {
        let count = drv::device::get_count().unwrap_or(0).max(0) as usize;
        (0..count).filter_map(|i| device_summary(i).ok()).collect()
    } else {
        Vec::new()
    };
    let nvrtc = nvrtc_version()
        .and_then(|(major, minor)| nvrtc_library().map(|file| format!("{major}.{minor} ({file})")));
    CudaProbe {
        driver,
        nvrtc,
        cublas: cublas_library().map(|_| ()),
        cublaslt: cublaslt_library().map(|_| ()),
        devices,
    }
}

/// Marketing architecture name from the compute capability.
pub(crate) fn architecture_name(cc: (u32, u32)) -> &'static str {
    match cc {
        (7, 0) | (7, 2) => "Volta",
        (7, 5) => "Turing",
        (8, 9) => "Ada",
        (8, _) => "Ampere",
        (9, _) => "Hopper",
        (10, _) | (11, _) | (12, _) => "Blackwell",
        (m, _) if m < 7 => "pre-Volta",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_module_version_is_the_dotted_number_of_its_line() {
        let open = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build  (dvs-builder@U22-I3-AF03-09-1)  Tue Aug 26 2025\nGCC version:  gcc version 13.3.0\n";
        assert_eq!(module_version_of(open).as_deref(), Some("580.159.04"));
        let closed = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023\n";
        assert_eq!(module_version_of(closed).as_deref(), Some("535.104.05"));
        assert_eq!(module_version_of("no such line"), None);
    }

    #[test]
    fn uuid_is_formatted_like_nvml() {
        let bytes: [u8; 16] = [
            0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
            0xcd, 0xef,
        ];
        assert_eq!(
            format_uuid(&bytes),
            "GPU-12345678-9abc-def0-0123-456789abcdef"
        );
    }

    #[test]
    fn architecture_names() {
        assert_eq!(architecture_name((9, 0)), "Hopper");
        assert_eq!(architecture_name((8, 9)), "Ada");
        assert_eq!(architecture_name((8, 6)), "Ampere");
        assert_eq!(architecture_name((12, 0)), "Blackwell");
    }

    #[test]
    fn probe_never_panics_and_explains_what_is_missing() {
        let p = probe();
        // Either a driver with its devices, or a reason that names the library.
        match &p.driver {
            Ok(_) => {}
            Err(why) => {
                assert!(why.contains("CUDA driver"), "{why}");
                assert!(p.devices.is_empty());
            }
        }
        if let Err(why) = &p.cublas {
            assert!(why.contains("cuBLAS"), "{why}");
        }
    }

    #[test]
    fn a_missing_library_is_a_reason() {
        let err = locate(&["joulebench_no_such_library"], &[]).unwrap_err();
        assert!(
            err.contains("libjoulebench_no_such_library.so not found"),
            "{err}"
        );
        assert!(err.contains("libjoulebench_no_such_library.so.12"), "{err}");
    }
}
