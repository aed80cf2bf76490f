//! Prometheus building blocks shared by every component's own metrics struct: registration
//! helpers and [`Family`], a labelled counter whose label values are owned by a domain enum
//! (its [`Label`] implementation), with every child resolved once at start.
//!
//! Each component (hub, upstream, downstream, edge, server) owns a `…Metrics` struct built with
//! these from the one registry the caller owns (no global statics), so tests read values
//! directly. Names follow Prometheus conventions (`sse_relay_…_total`, `_seconds`, `_bytes`).
//! This module knows no component.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// A domain enum whose values are the label values of a metric family (e.g. why a connection
/// was closed). The enum owns the spelling; the metric only counts.
pub trait Label: Copy + PartialEq + 'static {
    /// Every value, in the order children are created.
    const ALL: &'static [Self];
    /// The label value (Prometheus label values are free text; ours are `snake_case`).
    fn label(self) -> &'static str;
}

/// A counter family labelled by the values of `E`, every child resolved at creation (so each
/// series exists from the start, at 0, and counting is one atomic add).
pub struct Family<E: Label> {
    children: Vec<IntCounter>,
    _values: std::marker::PhantomData<E>,
}

impl<E: Label> Family<E> {
    /// Registers `name` with one label named `label_name` and a child per value of `E`.
    ///
    /// # Errors
    /// A `prometheus::Error` if the name is invalid or already registered in `registry`.
    pub fn new(
        registry: &Registry,
        name: &str,
        help: &str,
        label_name: &str,
    ) -> prometheus::Result<Self> {
        let vec = IntCounterVec::new(Opts::new(name, help), &[label_name])?;
        registry.register(Box::new(vec.clone()))?;
        let children = E::ALL
            .iter()
            .map(|value| vec.with_label_values(&[value.label()]))
            .collect();
        Ok(Self {
            children,
            _values: std::marker::PhantomData,
        })
    }

    /// The child counting `value`.
    pub fn get(&self, value: E) -> &IntCounter {
        let index = E::ALL.iter().position(|v| *v == value).unwrap_or(0);
        &self.children[index]
    }

    /// Counts one occurrence of `value`.
    pub fn inc(&self, value: E) {
        self.get(value).inc();
    }
}

/// Registers an integer counter.
///
/// # Errors
/// A `prometheus::Error` if the name is invalid or already registered.
pub fn counter(registry: &Registry, name: &str, help: &str) -> prometheus::Result<IntCounter> {
    let c = IntCounter::new(name, help)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

/// Registers an integer gauge.
///
/// # Errors
/// A `prometheus::Error` if the name is invalid or already registered.
pub fn gauge(registry: &Registry, name: &str, help: &str) -> prometheus::Result<IntGauge> {
    let g = IntGauge::new(name, help)?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

/// Registers a histogram with the given bucket upper bounds.
///
/// # Errors
/// A `prometheus::Error` if the name or buckets are invalid or the name is already registered.
pub fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    buckets: Vec<f64>,
) -> prometheus::Result<Histogram> {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))?;
    registry.register(Box::new(h.clone()))?;
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, PartialEq, Debug)]
    enum Colour {
        Red,
        Blue,
    }

    impl Label for Colour {
        const ALL: &'static [Self] = &[Self::Red, Self::Blue];
        fn label(self) -> &'static str {
            match self {
                Self::Red => "red",
                Self::Blue => "blue",
            }
        }
    }

    #[test]
    fn family_children_exist_at_zero_and_count_by_value() {
        let registry = Registry::new();
        let family = Family::<Colour>::new(&registry, "t_total", "test", "colour").unwrap();
        family.inc(Colour::Blue);
        family.inc(Colour::Blue);
        assert_eq!(family.get(Colour::Red).get(), 0);
        assert_eq!(family.get(Colour::Blue).get(), 2);
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        assert!(text.contains("t_total{colour=\"red\"} 0"), "{text}");
        assert!(text.contains("t_total{colour=\"blue\"} 2"), "{text}");
    }
}
