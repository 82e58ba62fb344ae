import Testing

@testable import WarrenCluster

@Suite("Peer discovery (DNS, a StatefulSet's pods)")
struct PeerDiscoveryTests {
    /// A fake resolver: these pod names resolve (to NAME:25672).
    static func dns(_ names: Set<String>) -> (String) -> String? { { names.contains($0) ? "\($0):25672" : nil } }

    @Test("the pod's name gives its StatefulSet and ordinal; peers are the pods whose names resolve, pod 0 first, itself left out")
    func peers() {
        let d = PeerDiscovery(service: "warren-headless", hostname: "warren-2", port: 25672)
        #expect(d.ordinal == 2 && d.statefulSet == "warren" && d.myAddress == "warren-2.warren-headless:25672")
        let all: Set = ["warren-0.warren-headless", "warren-1.warren-headless", "warren-2.warren-headless"]
        #expect(d.peers(resolve: Self.dns(all)) == ["warren-0.warren-headless:25672", "warren-1.warren-headless:25672"])
        // A pod being replaced leaves a gap; the pods past it are still found (two misses end it).
        let gap: Set = ["warren-0.warren-headless", "warren-3.warren-headless", "warren-4.warren-headless"]
        #expect(d.peers(resolve: Self.dns(gap)) == ["warren-0.warren-headless:25672", "warren-3.warren-headless:25672", "warren-4.warren-headless:25672"])
        // Nothing resolves yet (DNS lags behind the pods): no peers, not a crash.
        #expect(d.peers(resolve: Self.dns([])).isEmpty)
        #expect(PeerDiscovery(service: "s", hostname: "warren", port: 1).ordinal == nil)
        #expect(PeerDiscovery(setting: "dns:warren-headless", hostname: "warren-0", port: 25672)?.service == "warren-headless")
        #expect(PeerDiscovery(setting: "k8s:warren", hostname: "warren-0", port: 25672) == nil)
    }

    @Test("only pod 0 founds, only once every peer said it is in no cluster; a member anywhere means join")
    func decisions() {
        let pod0 = PeerDiscovery(service: "svc", hostname: "warren-0", port: 25672)
        let pod1 = PeerDiscovery(service: "svc", hostname: "warren-1", port: 25672)
        let peers = ["warren-1.svc:25672", "warren-2.svc:25672"]
        // Alone (scaled from zero, or a cluster of one): found.
        #expect(pod0.decide(peers: [], answers: [:]) == .found)
        // Started together: both others answered "no cluster here either".
        #expect(pod0.decide(peers: peers, answers: [peers[0]: .notMember, peers[1]: .notMember]) == .found)
        // One has not answered: it may hold the cluster (pod 0 lost its volume): wait.
        guard case .wait(let why) = pod0.decide(peers: peers, answers: [peers[0]: .notMember]) else {
            Issue.record("pod 0 must wait for a silent peer")
            return
        }
        #expect(why.contains("warren-2.svc:25672"))
        // A member answered: join it, never found a second cluster.
        #expect(pod0.decide(peers: peers, answers: [peers[0]: .member]) == .join)
        // Other pods never found, whatever they hear.
        #expect(pod1.decide(peers: ["warren-0.svc:25672"], answers: ["warren-0.svc:25672": .notMember]) == .join)
        #expect(pod1.decide(peers: [], answers: [:]) == .join)
    }
}
