package job

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestServiceAliases(t *testing.T) {
	tests := []struct {
		name  string
		image Image
		want  []string
	}{
		{"official image with tag", Image{Name: "postgres:16"}, []string{"postgres"}},
		{"no tag", Image{Name: "redis"}, []string{"redis"}},
		{"namespace", Image{Name: "bitnami/redis:7.2"}, []string{"bitnami__redis", "bitnami-redis"}},
		{"registry port and digest", Image{Name: "reg.example.com:5000/db/pg:16@sha256:0123abcd0123abcd0123abcd0123abcd0123abcd0123abcd0123abcd0123abcd"},
			[]string{"reg.example.com__db__pg", "reg.example.com-db-pg"}},
		{"digest only", Image{Name: "mysql@sha256:0123abcd0123abcd0123abcd0123abcd0123abcd0123abcd0123abcd0123abcd"}, []string{"mysql"}},
		{"malformed digest gives no derived alias", Image{Name: "mysql@sha256:0123abcd"}, nil},
		{"upper case is not a reference", Image{Name: "Team/Redis"}, nil},
		{"localhost registry", Image{Name: "localhost:5000/svc"}, []string{"localhost__svc", "localhost-svc"}},
		{"user alias", Image{Name: "postgres:16", Alias: "db"}, []string{"postgres", "db"}},
		{"several user aliases, duplicates once", Image{Name: "warmcache-test/httpd:1", Alias: "web, api  web,warmcache-test-httpd"},
			[]string{"warmcache-test__httpd", "warmcache-test-httpd", "web", "api"}},
		{"invalid user aliases dropped", Image{Name: "redis", Alias: "-x,a$b,ok,.dot"}, []string{"redis", "ok"}},
		{"invalid image name gives no derived alias", Image{Name: "bad name!", Alias: "db"}, []string{"db"}},
		{"empty", Image{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ServiceAliases(tt.image); !slices.Equal(got, tt.want) {
				t.Errorf("ServiceAliases(%+v) = %q, want %q", tt.image, got, tt.want)
			}
		})
	}
	if long := strings.Repeat("a", 254); validAlias(long) || !validAlias(long[1:]) {
		t.Error("the 253-character limit is not applied")
	}
}

func TestServiceEnv(t *testing.T) {
	j := Job{Variables: []Variable{
		{Key: "CI_JOB_ID", Value: "7", Public: true},
		{Key: "CI_JOB_TOKEN", Value: "tok", Masked: true},
		{Key: "SECRET", Value: "s3cr3t", Masked: true},
		{Key: "HOST", Value: "db", Public: true},
		{Key: "OVERRIDDEN", Value: "job", Public: true},
		{Key: "DOCKER_AUTH_CONFIG", Value: `{"auths":{}}`, Public: true}, // YAML-defined, still kept out
	}}
	got := j.ServiceEnv(Image{Variables: []Variable{
		{Key: "URL", Value: "postgres://${HOST}/$CI_JOB_ID$SECRET"},
		{Key: "LITERAL", Value: "$HOST", Raw: true},
		{Key: "OVERRIDDEN", Value: "service"},
		{Key: "PASSWORD", Value: "pa$$word$1$#"}, // $$ is a literal $; specials are empty
	}})
	want := []string{"CI_JOB_ID=7", "HOST=db", "OVERRIDDEN=job", "URL=postgres://db/7", "LITERAL=$HOST", "OVERRIDDEN=service", "PASSWORD=pa$word"}
	if !slices.Equal(got, want) {
		t.Errorf("ServiceEnv = %q, want %q", got, want)
	}
}

func TestLoadServices(t *testing.T) {
	dir := t.TempDir()
	noServices := filepath.Join(dir, "none.json")
	emptyServices := filepath.Join(dir, "empty.json")
	if err := errors.Join(
		os.WriteFile(noServices, []byte(`{"id":1,"job_info":{"project_id":2}}`), 0o600),
		os.WriteFile(emptyServices, []byte(`{"id":1,"job_info":{"project_id":2},"services":[]}`), 0o600),
	); err != nil {
		t.Fatal(err)
	}
	fromEnv := `[{"name":"redis:7","alias":"cache","entrypoint":["redis-server"],"command":["--port","6380"],"variables":[{"key":"A","value":"1"}]}]`
	tests := []struct {
		name, path, env string
		want            []string // service names
		wantErr         string
	}{
		{"response services win", fixture, fromEnv, []string{"postgres:16", "redis:7"}, ""},
		{"an empty list in the response wins", emptyServices, fromEnv, nil, ""},
		{"no services in the response: the variable", noServices, fromEnv, []string{"redis:7"}, ""},
		{"neither", noServices, "", nil, ""},
		{"invalid variable", noServices, `{"name":`, nil, "CUSTOM_ENV_CI_JOB_SERVICES is not a JSON list of services: unexpected end of JSON input"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j, err := Load(env(map[string]string{"JOB_RESPONSE_FILE": tt.path, "CUSTOM_ENV_CI_JOB_SERVICES": tt.env}))
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, s := range j.Services {
				names = append(names, s.Name)
			}
			if !slices.Equal(names, tt.want) {
				t.Errorf("services %q, want %q", names, tt.want)
			}
			if gotErr := fmt.Sprint(j.ServicesEnvError); (tt.wantErr == "" && j.ServicesEnvError != nil) || (tt.wantErr != "" && gotErr != tt.wantErr) {
				t.Errorf("ServicesEnvError = %v, want %q", j.ServicesEnvError, tt.wantErr)
			}
		})
	}
	j, err := Load(env(map[string]string{"JOB_RESPONSE_FILE": noServices, "CUSTOM_ENV_CI_JOB_SERVICES": fromEnv}))
	if err != nil {
		t.Fatal(err)
	}
	want := []Image{{Name: "redis:7", Alias: "cache", Entrypoint: []string{"redis-server"}, Command: []string{"--port", "6380"},
		Variables: []Variable{{Key: "A", Value: "1"}}}}
	if !reflect.DeepEqual(j.Services, want) {
		t.Errorf("services from the variable = %#v, want %#v", j.Services, want)
	}
}
