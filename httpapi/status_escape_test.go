package httpapi

import (
	"bytes"
	"strings"
	"testing"

	"github.com/tandem-io/tandem"
)

// Whatever a member gossips about itself is text on the page: a name, an
// address or an event's detail carrying markup is escaped, never markup.
func TestStatusPageEscapes(t *testing.T) {
	const evil = `x"><script>alert(1)</script><img src=x onerror=alert(2)>`
	m := tandem.MemberStatus{Name: evil, Gossip: evil, Health: evil, Meta: tandem.MemberMeta{HTTP: evil, Peer: evil, BootID: evil, State: evil}}
	v := statusView{
		Node: evil, Time: evil, Size: ringSize, Center: ringSize / 2,
		Readiness: tandem.Readiness{Reason: evil, Detail: evil},
		Members:   []memberRow{{MemberStatus: m, InRing: true, Color: `red" onload="alert(3)`}},
		Primaries: []arc{{Path: `M0 0" onclick="alert(4)`, Color: evil, Title: evil}},
		Buddies:   []arc{{Path: arcPath(180, 98, 128, 0, 271), Color: "#4e79a7", Title: evil}},
		Events:    []eventRow{{Time: evil, Added: []string{evil}, Removed: []string{evil}, Detail: evil}},
	}
	var buf bytes.Buffer
	if err := statusPage.Execute(&buf, v); err != nil {
		t.Fatal(err)
	}
	page := strings.ToLower(buf.String())
	for _, bad := range []string{"<script", "<img", `" onload=`, `" onclick=`, `" onerror=`} {
		if strings.Contains(page, bad) {
			t.Errorf("the page contains %q", bad)
		}
	}
	if !strings.Contains(buf.String(), "&lt;script&gt;") {
		t.Errorf("the hostile name is not shown escaped")
	}
}
