package stages

import (
	"errors"
	"testing"
)

type stepRun struct {
	stage string
	err   error
}

// TestStepsSucceeded: the commit signal is every started step ending well.
func TestStepsSucceeded(t *testing.T) {
	tests := []struct {
		name   string
		steps  []stepRun
		killed string // a step whose driver was killed: started, never ended
		want   bool
	}{
		{name: "no step", want: false},
		{name: "one step passes", steps: []stepRun{{"build_script", nil}}, want: true},
		{name: "a later step fails", steps: []stepRun{{"build_script", nil}, {"step_release", &BuildFailure{Code: 1}}}, want: false},
		{name: "system failure", steps: []stepRun{{"build_script", errors.New("engine gone")}}, want: false},
		{name: "after_script and others do not count", steps: []stepRun{{"build_script", nil}, {"after_script", &BuildFailure{Code: 1}}, {"upload_artifacts_on_success", errors.New("x")}}, want: true},
		{name: "killed during a step", steps: []stepRun{{"build_script", nil}}, killed: "step_deploy", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.cfg.Cache.CommitOnSuccess = true
			dir := t.TempDir()
			for _, s := range tt.steps {
				err := s.err
				if isStep(s.stage) { // what markStep notes
					markStepIn(h.deps(), []string{dir}, s.stage)(&err)
				}
			}
			if tt.killed != "" {
				markStepIn(h.deps(), []string{dir}, tt.killed)
			}
			if got := stepsSucceeded(dir); got != tt.want {
				t.Errorf("stepsSucceeded = %v, want %v", got, tt.want)
			}
		})
	}
}
