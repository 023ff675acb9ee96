package job

import (
	"os"
	"testing"
)

// FuzzParse: any payload either fails or yields a job with the positive
// ids every resource name relies on; nothing panics.
func FuzzParse(f *testing.F) {
	sample, err := os.ReadFile("testdata/job_response.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sample)
	f.Add([]byte(`{"id":1,"job_info":{"project_id":2},"git_info":{"protected":null},"variables":[{"key":"CI_COMMIT_REF_PROTECTED","value":"true"}]}`))
	f.Add([]byte(`{"id":-1}`))
	f.Add([]byte(`{"id":1,"job_info":{"project_id":2},"image":{"entrypoint":[""],"executor_opts":{"docker":{"user":"../../x"}}}}`))
	f.Add([]byte(`{"id":1e400}`))
	f.Add([]byte(`{"id":1,"job_info":{"project_id":2},"services":[{"name":"reg:5000/a/b:1@sha256:00","alias":"x, y,,-z"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		j, err := Parse(data)
		if err != nil {
			return
		}
		if j.ID <= 0 || j.ProjectID <= 0 {
			t.Fatalf("accepted ids %d/%d", j.ID, j.ProjectID)
		}
		_ = j.Key().Base()
		_ = j.Secrets()
		for _, s := range j.Services {
			for _, a := range ServiceAliases(s) {
				if !validAlias(a) {
					t.Fatalf("service %q got the alias %q", s.Name, a)
				}
			}
			_ = j.ServiceEnv(s)
		}
	})
}
