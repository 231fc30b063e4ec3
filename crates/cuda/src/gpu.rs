//! One CUDA device as every kernel sees it: the context and stream, the module
//! cache (NVRTC-compiled kernels, loaded once per file), the vendor library
//! handles, and a prepared kernel's buffers and launch. The backend, our kernels
//! and the vendor's all build on this; it imports none of them.

use crate::handles::{Blas, BlasLt};
use crate::kernels::KernelFile;
use crate::nvrtc::{self, Arch, Target};
use crate::tensor::{device_error, Tensor};
use crate::timing::Timer;
use cudarc::driver::{sys as drv_sys, CudaContext, CudaFunction, CudaModule, CudaStream};
use cudarc::nvrtc::Ptx;
use joulebench_core::reference::CheckInputs;
use joulebench_core::{BackendError, PreparedKernel, RunTiming};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Everything a prepared kernel borrows from the backend: the context and stream, the
/// loaded modules and the vendor library handles.
pub(crate) struct Gpu {
    // Fields drop in order: library handles (and the cuBLASLt workspace) go before the
    // stream they are bound to.
    blas: OnceLock<Result<Blas, String>>,
    blas_lt: OnceLock<Result<BlasLt, String>>,
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    pub stream: Arc<CudaStream>,
    pub ctx: Arc<CudaContext>,
    pub cc: (u32, u32),
    pub max_smem_per_block_optin_bytes: u32,
    pub l2_bytes: usize,
}

impl Gpu {
    pub(crate) fn new(
        ctx: Arc<CudaContext>,
        stream: Arc<CudaStream>,
        cc: (u32, u32),
        max_smem_per_block_optin_bytes: u32,
        l2_bytes: usize,
    ) -> Gpu {
        Gpu {
            blas: OnceLock::new(),
            blas_lt: OnceLock::new(),
            modules: Mutex::new(HashMap::new()),
            stream,
            ctx,
            cc,
            max_smem_per_block_optin_bytes,
            l2_bytes,
        }
    }

    /// cudarc binds the context in its own calls; cuBLAS calls rely on the thread's
    /// current context, so bind before any work in case the backend moved threads.
    pub(crate) fn bind(&self) -> Result<(), BackendError> {
        self.ctx
            .bind_to_thread()
            .map_err(device_error("make the CUDA context current"))
    }

    /// A kernel from one of our files, compiled (or cached) for this device, with its
    /// launch configuration; dynamic shared memory above 48 KiB is opted into here.
    pub(crate) fn function(
        &self,
        file: &'static KernelFile,
        kernel: &str,
    ) -> Result<(CudaFunction, u32, u32), BackendError> {
        let spec = file.kernel(kernel).ok_or_else(|| {
            BackendError::Compile(format!("{kernel} is not a kernel of {}.cu", file.name))
        })?;
        let module = self.module(file)?;
        let f = module
            .load_function(kernel)
            .map_err(device_error("find the kernel in its module"))?;
        let static_smem = f
            .shared_size_bytes()
            .map_err(device_error("query the kernel's shared memory"))?
            .max(0) as u32;
        let total = static_smem + spec.dynamic_smem_bytes;
        if total > self.max_smem_per_block_optin_bytes {
            return Err(BackendError::DoesNotFit(format!(
                "{kernel} needs {total} bytes of shared memory per block, this GPU offers {}",
                self.max_smem_per_block_optin_bytes
            )));
        }
        if spec.dynamic_smem_bytes > 0 {
            f.set_attribute(
                drv_sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                spec.dynamic_smem_bytes as i32,
            )
            .map_err(device_error("allow the kernel's dynamic shared memory"))?;
        }
        Ok((f, spec.threads_per_block, spec.dynamic_smem_bytes))
    }

    fn module(&self, file: &'static KernelFile) -> Result<Arc<CudaModule>, BackendError> {
        let mut modules = self
            .modules
            .lock()
            .map_err(|_| BackendError::Device("module cache poisoned by a panic".into()))?;
        if let Some(m) = modules.get(file.name) {
            return Ok(m.clone());
        }
        let (arch, target) = nvrtc::target_for_device(Arch::new(self.cc.0, self.cc.1))
            .map_err(BackendError::Unavailable)?;
        let compiled = nvrtc::compile(file, arch, target).map_err(|e| match e {
            nvrtc::CompileError::Unavailable(why) => BackendError::Unavailable(why),
            other => BackendError::Compile(other.to_string()),
        })?;
        let image = match target {
            Target::Cubin => Ptx::from_binary(compiled.image.clone()),
            Target::Ptx => Ptx::from_src(String::from_utf8_lossy(&compiled.image).into_owned()),
        };
        let module = self
            .ctx
            .load_module(image)
            .map_err(device_error("load the compiled module"))?;
        modules.insert(file.name, module.clone());
        Ok(module)
    }

    pub(crate) fn blas(&self) -> Result<&Blas, BackendError> {
        self.blas
            .get_or_init(|| Blas::new(&self.stream))
            .as_ref()
            .map_err(|e| BackendError::Unavailable(e.clone()))
    }

    pub(crate) fn blas_lt(&self) -> Result<&BlasLt, BackendError> {
        self.blas_lt
            .get_or_init(|| BlasLt::new(&self.stream))
            .as_ref()
            .map_err(|e| BackendError::Unavailable(e.clone()))
    }

    /// Fail with DoesNotFit before allocating what the device cannot hold.
    pub(crate) fn ensure_free(&self, bytes: u64, what: &str) -> Result<(), BackendError> {
        let (free, _total) = self
            .ctx
            .mem_get_info()
            .map_err(device_error("query free device memory"))?;
        // Leave room for cuBLAS workspaces and the allocator's rounding.
        let usable = (free as u64).saturating_sub(256 << 20);
        if bytes > usable {
            return Err(BackendError::DoesNotFit(format!(
                "{what} needs {:.2} GiB of device memory, {:.2} GiB is free",
                bytes as f64 / (1u64 << 30) as f64,
                free as f64 / (1u64 << 30) as f64
            )));
        }
        Ok(())
    }
}

/// One iteration of a prepared kernel, enqueued on the stream.
pub(crate) type Launch<'a> = Box<dyn FnMut() -> Result<(), BackendError> + 'a>;

/// A kernel with its buffers allocated and its inputs uploaded.
pub(crate) struct Prepared<'a> {
    pub gpu: &'a Gpu,
    /// In [`CheckInputs::tensors`] order: a, b; q, k, v; or q, k, v, dO.
    pub inputs: Vec<Tensor>,
    pub output: Tensor,
    pub launch: Launch<'a>,
    pub timer: Timer,
    pub variant: String,
    /// Intermediate buffers the launch addresses (kept alive, never read back).
    pub _scratch: Vec<Tensor>,
    /// Untimed work the launch reads and fresh inputs change: a backward's forward
    /// pass (its output and log-sum-exp). Run after the check uploads its inputs;
    /// whoever builds the kernel runs it once for the timed runs.
    pub refresh: Option<Launch<'a>>,
}

impl PreparedKernel for Prepared<'_> {
    fn run_for_check(&mut self, inputs: &CheckInputs) -> Result<Vec<f32>, BackendError> {
        self.gpu.bind()?;
        let values = inputs.tensors();
        if values.len() != self.inputs.len() {
            return Err(BackendError::Device(
                "check inputs do not match the prepared operation".into(),
            ));
        }
        let stream = self.gpu.stream.clone();
        for (tensor, v) in self.inputs.iter_mut().zip(values) {
            tensor.upload(&stream, v)?;
        }
        if let Some(refresh) = self.refresh.as_mut() {
            refresh()?;
        }
        self.output.poison(&stream)?;
        (self.launch)()?;
        stream
            .synchronize()
            .map_err(device_error("run the kernel"))?;
        self.output.download(&stream)
    }

    fn run(&mut self, iterations: u64) -> Result<RunTiming, BackendError> {
        self.gpu.bind()?;
        self.timer.run(iterations, &mut self.launch)
    }

    fn variant(&self) -> Option<String> {
        Some(self.variant.clone())
    }

    fn work_besides_kernel(&self) -> Option<String> {
        self.timer.flushes().then(|| {
            "an L2 flush (a memset of a buffer the size of L2) before every iteration".into()
        })
    }
}
