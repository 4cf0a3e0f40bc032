// Package chaos runs a Tandem cluster of real node processes on loopback,
// attacks it under load and proves what survived.
//
// A run (Run) starts N `tandem serve` processes (Cluster), drives a
// workload of concurrent clients over a set of sessions through the HTTP
// API (Workload), injects faults drawn from a seeded schedule (Schedule,
// Nemesis) — kill -9, pauses longer than the failure detector, graceful
// and same-name restarts, two-way and one-way cuts of peer traffic,
// latency, drops and clock skew — then heals the cluster, lets it settle,
// reads everything back and checks the recorded History (Check):
//
//   - every acknowledged write is readable at the end unless a later
//     acknowledged write superseded it;
//   - reads are linearizable per session, checked with porcupine against a
//     versioned-register model;
//   - deleted sessions never come back;
//   - nothing expired is served, allowing for the clock skew injected;
//   - an answer's content goes with its version: one version, one content;
//   - each session's own copies on its primary and its buddy are its
//     final state (Workload.ReadCopies).
//
// A session whose linearizability check does not finish (porcupine's
// search timed out) is unknown, and fails the run like an anomaly. To keep
// histories checkable the workload rotates keys: each long-lived session
// slot moves to a fresh id after WorkloadConfig.OpsPerSession requests.
//
// The verdict is PASS, or FAIL with every anomaly and unknown session
// listed, and a report
// (WriteReport) holds it as JSON and as an HTML page with a timeline of
// faults, throughput and errors. The same seed gives the same fault
// schedule and the same workload choices.
//
// Other projects' tests can import the package to start, attack and check
// a cluster: StartCluster and its fault methods are the building blocks;
// Run puts them together. Every child process is killed when the Cluster
// is closed, when the context ends and (on Linux) when the harness dies.
package chaos
