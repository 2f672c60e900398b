//! The root context: compiles the configuration, seeds the directory, defines the
//! counters, and hands every HTTP context a shared, immutable view of them.

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, MetricType};

use super::http::GateHttp;
use super::store::HostSharedData;
use crate::config::{self, Gate};
use crate::directory;
use crate::metrics::Counter;

const VERSION: &str = env!("CARGO_PKG_VERSION");
const GIT_SHA: &str = env!("DEVPORTAL_GATE_GIT_SHA");

/// Metric ids by `Counter::index()`.
pub type MetricIds = Rc<Vec<u32>>;

#[derive(Default)]
pub struct GateRoot {
    gate: Option<Rc<Gate>>,
    metrics: MetricIds,
}

impl Context for GateRoot {}

impl RootContext for GateRoot {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        log::info!("devportal-gate {VERSION} ({GIT_SHA}) starting");
        true
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        match self.configure() {
            Ok(()) => true,
            Err(message) => {
                // Envoy and Kong then refuse the filter; the message names the field.
                log::error!("devportal-gate: {message}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(GateHttp::new(self.gate.clone(), self.metrics.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl GateRoot {
    fn configure(&mut self) -> Result<(), String> {
        let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .map_err(|status| format!("cannot read the plugin configuration: {status:?}"))?
            .unwrap_or_default();
        let config = config::compile(&bytes).map_err(|error| error.to_string())?;
        let report = directory::seed(&HostSharedData, &config.gate.namespace, &config.developers)
            .map_err(|error| format!("cannot seed the developer directory: {error}"))?;
        self.metrics = Rc::new(define_metrics()?);
        log::info!(
            "devportal-gate {VERSION} ({GIT_SHA}) configured: {} developers in namespace {:?} ({} written, {} already current, {} removed)",
            config.developers.len(),
            config.gate.namespace,
            report.written,
            report.unchanged,
            report.removed,
        );
        self.gate = Some(Rc::new(config.gate));
        Ok(())
    }
}

fn define_metrics() -> Result<Vec<u32>, String> {
    Counter::all()
        .into_iter()
        .map(|counter| {
            hostcalls::define_metric(MetricType::Counter, &counter.name())
                .map_err(|status| format!("cannot define metric {}: {status:?}", counter.name()))
        })
        .collect()
}
