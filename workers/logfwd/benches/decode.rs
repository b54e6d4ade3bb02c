//! logfwd messages: 1,000 masked text frames of logfwd JSON (an nginx access line each),
//! decoded and mapped, fed in 64 KiB reads.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dk_input_logfwd::message;
use dk_input_logfwd::ws::{Decoder, Event, Limits, client_frame};

fn bench(c: &mut Criterion) {
    let mut wire = Vec::new();
    for i in 0..1000 {
        let json = format!(
            r#"{{"type":"1","source":"nginx","tags":{{"filename":"/var/log/nginx/access.log","pod_name":"web-{i}"}},"log":"127.0.0.1 - - [01/Jan/2026:00:00:00 +0000] \"GET /api/v1/items/{i} HTTP/1.1\" 200 512"}}"#
        );
        wire.extend(client_frame(true, 1, json.as_bytes(), [1, 2, 3, 4]));
    }
    let tags = vec![("cluster".to_string(), "k8s".to_string())];
    let mut g = c.benchmark_group("logfwd");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("decode_and_map_1000_messages", |b| {
        b.iter(|| {
            let mut d = Decoder::new(Limits::default());
            let mut n = 0;
            for chunk in wire.chunks(64 * 1024) {
                d.push(chunk);
                while let Ok(Some(e)) = d.next_event() {
                    if let Event::Text(m) = e {
                        n += usize::from(message::map(&m, &tags, 0).is_ok());
                    }
                }
            }
            n
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
