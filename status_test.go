package tandem

import (
	"encoding/json"
	"testing"

	"github.com/tandem-io/tandem/cluster"
	"github.com/tandem-io/tandem/replica"
	"github.com/tandem-io/tandem/ring"
)

// ClusterStatus encodes, as JSON (GET /v1/cluster), exactly as it did
// when it held membership's, the ring's and the engine's own types.
func TestClusterStatusJSONKeepsItsShape(t *testing.T) {
	type engineStatus struct {
		Node            string                     `json:"node"`
		Epoch           uint64                     `json:"epoch"`
		Ready           bool                       `json:"ready"`
		Members         []cluster.Member           `json:"members"`
		Partitions      map[string]ring.MemberLoad `json:"partitions"`
		UnderReplicated int                        `json:"under_replicated"`
		PendingHandoff  int                        `json:"pending_handoff"`
		Lost            replica.LostPartitions     `json:"lost"`
		Conflicts       uint64                     `json:"conflicts"`
	}
	members := []cluster.Member{
		{Name: "n1", Addr: "127.0.0.1:7946", Health: "alive", Meta: cluster.Meta{BootID: "b1", Peer: "127.0.0.1:7947", HTTP: "127.0.0.1:8080", State: cluster.StateActive, Ring: "p271"}},
		{Name: "n2", Addr: "127.0.0.1:7956", Health: "dead", Meta: cluster.Meta{BootID: "b2", Peer: "127.0.0.1:7957", State: cluster.StateJoining, Ring: "p271"}},
		{Name: "n3", Addr: "127.0.0.1:7966", Health: "left", Meta: cluster.Meta{BootID: "b3", Peer: "127.0.0.1:7967", State: cluster.StateLeaving, Ring: "p271"}},
	}
	load := map[string]ring.MemberLoad{"n1": {Primary: 136, Buddy: 135}, "n2": {Primary: 135, Buddy: 136}}
	lost := replica.LostPartitions{Epoch: 4, Partitions: []int{3, 9}}
	for _, tc := range []struct {
		name    string
		members []cluster.Member
		load    map[string]ring.MemberLoad
		lost    replica.LostPartitions
	}{
		{"full", members, load, lost},
		{"empty", nil, nil, replica.LostPartitions{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			was, err := json.Marshal(engineStatus{Node: "n1", Epoch: 4, Ready: true, Members: tc.members, Partitions: tc.load,
				UnderReplicated: 2, PendingHandoff: 1, Lost: tc.lost, Conflicts: 5})
			if err != nil {
				t.Fatal(err)
			}
			is, err := json.Marshal(ClusterStatus{Node: "n1", Epoch: 4, Ready: true, Members: memberStatuses(tc.members), Partitions: partitionLoads(tc.load),
				UnderReplicated: 2, PendingHandoff: 1, Lost: LostPartitions{Epoch: tc.lost.Epoch, Partitions: tc.lost.Partitions}, Conflicts: 5})
			if err != nil {
				t.Fatal(err)
			}
			if string(is) != string(was) {
				t.Fatalf("ClusterStatus encodes as\n%s\nwas\n%s", is, was)
			}
		})
	}
}
