package replica

import "testing"

// TestConfirmQueueBoundsBatchesAndSendsOneBatchPerBuddyAtATime checks the
// queue without I/O: a buddy's confirmations are taken in batches of at
// most maxConfirmBatch, in the order queued; past maxConfirms a buddy's
// queue drops what comes; and while a batch is on its way to a buddy, no
// second one starts for it, while another buddy's may.
func TestConfirmQueueBoundsBatchesAndSendsOneBatchPerBuddyAtATime(t *testing.T) {
	q := newConfirmQueue()
	for i := range maxConfirms + 10 {
		q.add("b", i%7, &Session{ID: "s", Version: uint64(i + 1)})
	}
	q.add("c", 3, &Session{ID: "t", Version: 1})

	total := 0
	for {
		batch := q.take("b")
		if len(batch) == 0 {
			break
		}
		if len(batch) > maxConfirmBatch {
			t.Fatalf("a batch of %d, want at most %d", len(batch), maxConfirmBatch)
		}
		if got, want := batch[0].Mark.Version, uint64(total+1); got != want {
			t.Fatalf("batch starts at version %d, want %d (the order queued)", got, want)
		}
		total += len(batch)
	}
	if total != maxConfirms {
		t.Fatalf("took %d confirmations for b, want the bound %d", total, maxConfirms)
	}

	if !q.startSending("b") {
		t.Fatal("no batch on its way to b, yet startSending refused")
	}
	if q.startSending("b") {
		t.Fatal("a second batch started for b while one is on its way")
	}
	if !q.startSending("c") {
		t.Fatal("a batch on its way to b held up c's")
	}
	q.doneSending("b")
	if !q.startSending("b") {
		t.Fatal("b's batch is done, yet the next did not start")
	}
	if got := q.take("c"); len(got) != 1 || got[0].ID != "t" || got[0].Partition != 3 {
		t.Fatalf("c's queue = %+v, want the one confirmation of t in partition 3", got)
	}
}
