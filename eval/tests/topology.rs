//! Topology loaders on the shared data and on broken files.

use pias_eval::topology::*;
use std::path::{Path, PathBuf};

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/topologies")
        .join(rel)
}

#[test]
fn great_circle_is_right() {
    // New York to London is about 5,570 km.
    let km = great_circle_km(40.7128, -74.0060, 51.5074, -0.1278);
    assert!((km - 5570.0).abs() < 30.0, "{km}");
}

#[test]
fn abilene_graphml_loads_connected() {
    let (t, dropped) = load_graphml(
        &data("topologyzoo/graphml/Abilene.graphml"),
        "Abilene",
        Unlocated::Refuse,
    )
    .unwrap();
    assert!(dropped.is_empty());
    assert_eq!(t.pops.len(), 11);
    assert!(t.links.len() >= 13);
    assert!(t.links.iter().all(|l| l.km > 0.0));
}

#[test]
fn rocketfuel_maps_with_the_city_table() {
    let cities = load_cities(&data("rocketfuel/derived/city_locations.txt")).unwrap();
    assert!(cities.len() > 190);
    let att = data("rocketfuel/maps/7018.r0.cch");
    // Seven AT&T cities are not in the table: refusing names one of them...
    match load_cch(&att, &cities, "AS7018", Unlocated::Refuse) {
        Err(TopoError::Unlocated { count, .. }) => assert_eq!(count, 7),
        other => panic!("expected an unlocated-city refusal, got {other:?}"),
    }
    // ...dropping them (their routers contracted) still gives one connected POP graph.
    let (t, dropped) = load_cch(&att, &cities, "AS7018", Unlocated::Drop).unwrap();
    assert_eq!(dropped.len(), 7);
    assert!(
        t.pops.len() > 100 && t.links.len() > t.pops.len(),
        "{} pops {} links",
        t.pops.len(),
        t.links.len()
    );
    // Telstra's cities are all outside the table: an explicit error, not an empty graph.
    let telstra = load_cch(
        &data("rocketfuel/maps/1221.r0.cch"),
        &cities,
        "AS1221",
        Unlocated::Drop,
    )
    .unwrap_err();
    assert!(matches!(telstra, TopoError::Empty { .. }), "{telstra}");
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const GRAPHML_HEAD: &str = r#"<?xml version="1.0"?><graphml xmlns="http://graphml.graphdrawing.org/xmlns">
<key attr.name="Latitude" for="node" id="lat"/><key attr.name="Longitude" for="node" id="lon"/><key attr.name="label" for="node" id="lab"/><graph>"#;

#[test]
fn broken_files_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let disconnected = write(
        dir.path(),
        "d.graphml",
        &format!(
            "{GRAPHML_HEAD}<node id=\"a\"><data key=\"lab\">A</data><data key=\"lat\">1</data><data key=\"lon\">1</data></node>\
             <node id=\"b\"><data key=\"lab\">B</data><data key=\"lat\">2</data><data key=\"lon\">2</data></node>\
             <node id=\"c\"><data key=\"lab\">C</data><data key=\"lat\">3</data><data key=\"lon\">3</data></node>\
             <edge source=\"a\" target=\"b\"/></graph></graphml>"
        ),
    );
    let e = load_graphml(&disconnected, "x", Unlocated::Refuse)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("d.graphml") && e.contains("node C is unreachable"),
        "{e}"
    );

    let unlocated = write(
        dir.path(),
        "u.graphml",
        &format!("{GRAPHML_HEAD}<node id=\"a\"><data key=\"lab\">Nowhere</data></node></graph></graphml>"),
    );
    let e = load_graphml(&unlocated, "x", Unlocated::Refuse)
        .unwrap_err()
        .to_string();
    assert!(e.contains("node Nowhere has no coordinates"), "{e}");

    let bad_number = write(
        dir.path(),
        "n.graphml",
        &format!("{GRAPHML_HEAD}<node id=\"a\"><data key=\"lab\">A</data><data key=\"lat\">north</data><data key=\"lon\">1</data></node></graph></graphml>"),
    );
    let e = load_graphml(&bad_number, "x", Unlocated::Refuse)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("node A: Latitude \"north\" is not a number"),
        "{e}"
    );

    let not_xml = write(dir.path(), "x.graphml", "<graphml><node");
    assert!(load_graphml(&not_xml, "x", Unlocated::Refuse)
        .unwrap_err()
        .to_string()
        .contains("not GraphML"));

    let cch = write(
        dir.path(),
        "m.cch",
        "1 @A + bb (1) -> <2> =r1 r0\n2 @B + bb (1) -> <1> =r2 r0\nbroken line\n",
    );
    let cities = [("A".to_string(), (1.0, 1.0)), ("B".to_string(), (2.0, 2.0))]
        .into_iter()
        .collect();
    let e = load_cch(&cch, &cities, "x", Unlocated::Refuse)
        .unwrap_err()
        .to_string();
    assert!(e.contains("m.cch:3:"), "{e}");

    let missing = load_graphml(&dir.path().join("absent.graphml"), "x", Unlocated::Refuse)
        .unwrap_err()
        .to_string();
    assert!(missing.contains("absent.graphml"), "{missing}");
}
