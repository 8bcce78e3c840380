package store

import (
	"testing"
	"time"
)

// A batch of deletes goes the way that cost less per id lately, and the other way again once
// retryOtherWay times its extra cost has passed: among a backlog of thousands, DeleteMany's scan
// costs more than a DeleteOne each, and the choice follows.
func TestDeletesGoTheCheaperWay(t *testing.T) {
	var c deleteCost
	if c.allAtOnce(manyDeletes - 1) {
		t.Fatal("a batch under manyDeletes went all at once")
	}
	if !c.allAtOnce(32) {
		t.Fatal("the first batch did not go all at once")
	}
	c.record(true, 32, 32*time.Millisecond) // a scan of a large collection: 1 ms an id
	if c.allAtOnce(32) {
		t.Fatal("after a costly DeleteMany, the next batch went all at once again")
	}
	c.record(false, 32, 8*time.Millisecond) // 0.25 ms an id, one by one
	for i := range 5 {
		if c.allAtOnce(32) {
			t.Fatalf("batch %d went all at once, the costlier way, before %s", i, retryOtherWay)
		}
	}
	// DeleteMany cost 4 times more per id: tried again after 4 × retryOtherWay, not before.
	c.tried[0] = time.Now().Add(-3 * retryOtherWay)
	if c.allAtOnce(32) {
		t.Fatalf("all at once tried again after %s, when it cost 4 times more", 3*retryOtherWay)
	}
	c.tried[0] = time.Now().Add(-4*retryOtherWay - time.Second)
	if !c.allAtOnce(32) {
		t.Fatalf("all at once not tried again after %s", 4*retryOtherWay)
	}
	c.record(true, 32, time.Millisecond) // the collection is small again: cheap
	c.record(true, 32, time.Millisecond)
	c.record(true, 32, time.Millisecond)
	if !c.allAtOnce(32) {
		t.Fatal("DeleteMany cheaper again, the batch did not go all at once")
	}
}
