// Package parallel runs independent Docker calls at once: a job's start and
// teardown wait on the engine, not on the CPU.
package parallel

import (
	"errors"
	"fmt"
	"sync"
)

// Each calls f on every item concurrently, waits for all, and joins their
// errors in item order. A panic in f becomes that item's error: the
// program's recover in main cannot see other goroutines.
func Each[T any](items []T, f func(T) error) error {
	errs := make([]error, len(items))
	var wg sync.WaitGroup
	for i, it := range items {
		wg.Go(func() {
			defer func() {
				if p := recover(); p != nil {
					errs[i] = fmt.Errorf("internal error: %v", p)
				}
			}()
			errs[i] = f(it)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Go starts f at once and returns wait, which blocks until f has returned
// and gives its error (a panic in f becomes the error). wait may be
// called any number of times, e.g. once where the result is needed and
// once deferred, so that no call is left in flight on an early return.
func Go(f func() error) (wait func() error) {
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("internal error: %v", p)
			}
		}()
		err = f()
	}()
	return func() error {
		<-done
		return err
	}
}
