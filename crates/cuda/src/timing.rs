//! Device time from CUDA events, hot or cold. Events are created with timing enabled
//! (cudarc's default event disables timing), and a cold run flushes L2 before every
//! iteration, as nvbench's cold measurement does, keeping the flush out of device time.

use crate::tensor::device_error;
use cudarc::driver::{result as drv, sys as drv_sys, CudaContext, CudaEvent, CudaStream};
use joulebench_core::{BackendError, RunTiming};
use std::sync::Arc;
use std::time::Instant;

/// Whether each iteration starts with a warm L2 (back-to-back launches, the default: what
/// a layer inside a model sees) or a cold one (L2 flushed first: what a kernel whose
/// inputs were evicted sees).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum L2Mode {
    #[default]
    Hot,
    Cold,
}

impl L2Mode {
    pub fn name(self) -> &'static str {
        match self {
            L2Mode::Hot => "hot",
            L2Mode::Cold => "cold",
        }
    }
}

/// A device buffer the size of L2; writing it evicts whatever the kernel left there.
#[derive(Clone, Copy, Debug)]
pub(crate) struct L2Flush {
    pub ptr: drv_sys::CUdeviceptr,
    pub bytes: usize,
}

/// Cold runs record one event pair per iteration and read them back in chunks, so a
/// long run needs neither thousands of events nor a host sync per iteration.
const COLD_CHUNK: usize = 1024;

fn timing_event(ctx: &Arc<CudaContext>) -> Result<CudaEvent, BackendError> {
    ctx.new_event(Some(drv_sys::CUevent_flags::CU_EVENT_DEFAULT))
        .map_err(device_error("create a timing event"))
}

pub(crate) struct Timer {
    stream: Arc<CudaStream>,
    start: CudaEvent,
    end: CudaEvent,
    pairs: Vec<(CudaEvent, CudaEvent)>,
    flush: Option<L2Flush>,
}

impl Timer {
    pub(crate) fn new(
        stream: Arc<CudaStream>,
        flush: Option<L2Flush>,
    ) -> Result<Self, BackendError> {
        let ctx = stream.context().clone();
        Ok(Self {
            start: timing_event(&ctx)?,
            end: timing_event(&ctx)?,
            pairs: Vec::new(),
            flush,
            stream,
        })
    }

    /// Whether every iteration flushes L2 first (outside its device time).
    pub(crate) fn flushes(&self) -> bool {
        self.flush.is_some()
    }

    /// Run `launch` (one iteration, enqueued on the stream) `iterations` times and wait.
    pub(crate) fn run(
        &mut self,
        iterations: u64,
        launch: &mut dyn FnMut() -> Result<(), BackendError>,
    ) -> Result<RunTiming, BackendError> {
        match self.flush {
            None => self.run_hot(iterations, launch),
            Some(flush) => self.run_cold(iterations, launch, flush),
        }
    }

    fn run_hot(
        &mut self,
        iterations: u64,
        launch: &mut dyn FnMut() -> Result<(), BackendError>,
    ) -> Result<RunTiming, BackendError> {
        let wall = Instant::now();
        self.start
            .record(&self.stream)
            .map_err(device_error("record an event"))?;
        for _ in 0..iterations {
            launch()?;
        }
        self.end
            .record(&self.stream)
            .map_err(device_error("record an event"))?;
        self.end
            .synchronize()
            .map_err(device_error("wait for the kernels"))?;
        let wall_s = wall.elapsed().as_secs_f64();
        let ms = self
            .start
            .elapsed_ms(&self.end)
            .map_err(device_error("read event time"))?;
        Ok(RunTiming {
            wall_s,
            device_s: Some(ms as f64 / 1e3),
        })
    }

    fn run_cold(
        &mut self,
        iterations: u64,
        launch: &mut dyn FnMut() -> Result<(), BackendError>,
        flush: L2Flush,
    ) -> Result<RunTiming, BackendError> {
        let ctx = self.stream.context().clone();
        let wall = Instant::now();
        let mut device_ms = 0.0f64;
        let mut left = iterations;
        while left > 0 {
            let chunk = left.min(COLD_CHUNK as u64) as usize;
            while self.pairs.len() < chunk {
                self.pairs.push((timing_event(&ctx)?, timing_event(&ctx)?));
            }
            for (start, end) in &self.pairs[..chunk] {
                // SAFETY: the flush buffer is owned by the backend, which outlives this
                // prepared kernel; its size is the one it was allocated with.
                unsafe { drv::memset_d8_async(flush.ptr, 0, flush.bytes, self.stream.cu_stream()) }
                    .map_err(device_error("flush L2"))?;
                start
                    .record(&self.stream)
                    .map_err(device_error("record an event"))?;
                launch()?;
                end.record(&self.stream)
                    .map_err(device_error("record an event"))?;
            }
            for (start, end) in &self.pairs[..chunk] {
                device_ms += start
                    .elapsed_ms(end)
                    .map_err(device_error("read event time"))? as f64;
            }
            left -= chunk as u64;
        }
        self.stream
            .synchronize()
            .map_err(device_error("wait for the kernels"))?;
        Ok(RunTiming {
            wall_s: wall.elapsed().as_secs_f64(),
            device_s: Some(device_ms / 1e3),
        })
    }
}
