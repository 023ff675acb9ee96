package cache

import (
	"testing"

	"github.com/warmcache/warmcache/internal/cache/profile"
	"github.com/warmcache/warmcache/internal/naming"
)

func TestForkPlan(t *testing.T) {
	forks := ForkPlan(testKey, []Profile{wantGo})
	plain := profile.Plan(testKey, []Profile{wantGo})
	protKey := testKey
	protKey.Trust = Protected
	prot := profile.Plan(protKey, []Profile{wantGo})
	for i, f := range forks {
		if f.Lower.Name != prot[i].Name {
			t.Errorf("fork %d lower %s, want the protected %s", i, f.Lower.Name, prot[i].Name)
		}
		if f.Layer.Name == plain[i].Name || f.Layer.Labels[naming.LabelCacheLayer] != "true" || f.Layer.Labels[naming.LabelCacheTrust] != Unprotected {
			t.Errorf("fork %d layer %+v, want an unprotected layer volume apart from %s", i, f.Layer, plain[i].Name)
		}
		if plain[i].Labels[naming.LabelCacheLayer] != "" {
			t.Errorf("ForkPlan changed the labels of Plan's volumes")
		}
	}
}
