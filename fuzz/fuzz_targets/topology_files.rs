//! Topology inputs (GraphML, Rocketfuel .cch, the city table): any bytes give
//! a topology or an error, never a panic; whatever is accepted is connected.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pias_eval::topology::{parse_cch, parse_cities, parse_graphml, Unlocated};
use std::collections::HashMap;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new("fuzz-input");
    let mut cities = HashMap::new();
    cities.insert("Seattle, WA".to_string(), (47.6, -122.3));
    cities.insert("Chicago, IL".to_string(), (41.9, -87.6));
    if let Ok(parsed) = parse_cities(text, file) {
        cities.extend(parsed);
    }
    for unlocated in [Unlocated::Refuse, Unlocated::Drop] {
        for result in [
            parse_graphml(text, file, "fuzz", unlocated),
            parse_cch(text, file, &cities, "fuzz", unlocated),
        ] {
            if let Ok((topo, _)) = result {
                assert!(topo.check_connected(file).is_ok());
            }
        }
    }
});
