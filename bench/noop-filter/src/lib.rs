//! The floor for any proxy-wasm filter: with an empty configuration it lets every
//! request continue untouched. For profiling (`bench/run.py --probes`), its
//! configuration may name host calls to make on every request, one probe per
//! scenario, so the cost of each call the gate makes can be measured on its own
//! in the same Envoy (callgrind and perf cannot see into V8's compiled Wasm here).
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, MapType, MetricType};

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(NoopRoot::default()) });
}}

#[derive(Default, Clone, Copy)]
struct Probes {
    get_map: bool,
    get_map_value: bool,
    shared_get: bool,
    metric: Option<u32>,
    add_headers: bool,
}

#[derive(Default)]
struct NoopRoot {
    probes: Probes,
}

impl Context for NoopRoot {}
impl RootContext for NoopRoot {
    fn on_configure(&mut self, _: usize) -> bool {
        let config = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        let config = String::from_utf8_lossy(&config);
        for probe in config.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match probe {
                "get_map" => self.probes.get_map = true,
                "get_map_value" => self.probes.get_map_value = true,
                "shared_get" => {
                    self.probes.shared_get = true;
                    let _ = hostcalls::set_shared_data("bench/dev/alice@example.com", Some(b"1;approved;0"), None);
                }
                "metric" => self.probes.metric = hostcalls::define_metric(MetricType::Counter, "bench.probe").ok(),
                "add_headers" => self.probes.add_headers = true,
                _ => return false,
            }
        }
        true
    }
    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Noop(self.probes)))
    }
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Noop(Probes);
impl Context for Noop {}
impl HttpContext for Noop {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let probes = self.0;
        if probes.get_map {
            let _ = hostcalls::get_map(MapType::HttpRequestHeaders);
        }
        if probes.get_map_value {
            let _ = hostcalls::get_map_value(MapType::HttpRequestHeaders, "x-consumer-username");
        }
        if probes.shared_get {
            let _ = hostcalls::get_shared_data("bench/dev/alice@example.com");
        }
        if let Some(id) = probes.metric {
            let _ = hostcalls::increment_metric(id, 1);
        }
        if probes.add_headers {
            let _ = hostcalls::add_map_value(MapType::HttpRequestHeaders, "x-developer-email", "alice@example.com");
            let _ = hostcalls::add_map_value(MapType::HttpRequestHeaders, "x-developer-status", "approved");
        }
        Action::Continue
    }
}
