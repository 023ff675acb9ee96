package parallel

import (
	"errors"
	"sync/atomic"
	"testing"
)

func TestEach(t *testing.T) {
	var calls atomic.Int32
	err := Each([]int{1, 2, 3, 4}, func(n int) error {
		calls.Add(1)
		switch n {
		case 2:
			return errors.New("two failed")
		case 4:
			panic("four panicked")
		}
		return nil
	})
	if calls.Load() != 4 {
		t.Errorf("f ran %d times, want every item", calls.Load())
	}
	if err == nil || err.Error() != "two failed\ninternal error: four panicked" {
		t.Errorf("Each = %q, want both failures in item order", err)
	}
	if err := Each([]string{}, func(string) error { return errors.New("never") }); err != nil {
		t.Errorf("Each over nothing = %v", err)
	}
}

func TestGo(t *testing.T) {
	release := make(chan struct{})
	var finished atomic.Bool
	wait := Go(func() error {
		<-release
		finished.Store(true)
		return errors.New("failed")
	})
	close(release)
	for i := 0; i < 2; i++ {
		if err := wait(); err == nil || err.Error() != "failed" || !finished.Load() {
			t.Errorf("wait #%d = %v (finished %v), want f's error after it returned", i+1, err, finished.Load())
		}
	}
	if err := Go(func() error { panic("boom") })(); err == nil || err.Error() != "internal error: boom" {
		t.Errorf("a panic gives %v", err)
	}
}
