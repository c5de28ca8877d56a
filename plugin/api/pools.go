package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/tidepool-run/tidepool/plugin/pool"
	"github.com/tidepool-run/tidepool/plugin/poolspec"
	"github.com/tidepool-run/tidepool/plugin/reconcile"
	"github.com/tidepool-run/tidepool/plugin/sandbox"
	"github.com/tidepool-run/tidepool/plugin/store"
)

var errDeleting = errors.New("the pool is being deleted")

// DecodeSpec reads a PoolSpec body strictly and fills what it omits with
// the defaults, as the HCL decoder does: active, desired_count 1, the drain
// defaults, and the server's autoscaling defaults for every key an
// autoscaling object leaves out.
func DecodeSpec(body []byte, d poolspec.Defaults) (pool.Spec, error) {
	as := d.Autoscaling
	spec := pool.Spec{
		DesiredCount: 1,
		Active:       true,
		Drain:        pool.Drain{Timeout: pool.Duration(pool.DefaultDrainTimeout), GracePeriod: pool.Duration(pool.DefaultDrainGracePeriod)},
		Autoscaling:  &as,
	}
	if err := DecodeStrict(body, &spec); err != nil {
		return pool.Spec{}, err
	}
	var keys struct {
		Autoscaling map[string]json.RawMessage `json:"autoscaling"`
	}
	_ = json.Unmarshal(body, &keys)
	switch {
	case keys.Autoscaling == nil:
		spec.Autoscaling = nil // absent or null: no autoscaling
	case keys.Autoscaling["activation_scale"] == nil:
		spec.Autoscaling.ActivationScale = max(spec.Autoscaling.ActivationScale, spec.Autoscaling.MinScale)
	}
	return spec, nil
}

// readSpec decodes and validates a spec body, template included; on
// failure it answers and returns false.
func (s *Server) readSpec(c *gin.Context, owner string) (pool.Spec, bool) {
	body, ok := s.body(c)
	if !ok {
		return pool.Spec{}, false
	}
	spec, err := DecodeSpec(body, s.Defaults)
	if err != nil {
		var fe *pool.ValidationError
		if errors.As(err, &fe) {
			invalid(c, "invalid pool spec", fe.Fields)
		} else {
			abort(c, http.StatusBadRequest, err.Error())
		}
		return spec, false
	}
	if err := spec.Validate(s.Defaults.Limits); err != nil {
		s.fail(c, err)
		return spec, false
	}
	if err := pool.ValidateHostLabels(owner, &spec); err != nil {
		s.fail(c, err)
		return spec, false
	}
	if sc := spec.Scaler; sc != nil {
		// A script that does not parse is refused now, not at its first run.
		if err := sandbox.Check(sc.Script, []byte(sc.Source)); err != nil {
			invalid(c, "invalid pool spec", []pool.FieldError{{Field: "scaler.source", Message: err.Error()}})
			return spec, false
		}
	}
	if _, err := s.Nomad.Template(&pool.Pool{Spec: spec}); err != nil {
		s.fail(c, err)
		return spec, false
	}
	return spec, true
}

func (s *Server) body(c *gin.Context) ([]byte, bool) {
	var raw json.RawMessage
	if !s.decode(c, &raw) {
		return nil, false
	}
	return raw, true
}

// load resolves {id_or_name} to a pool the caller may see; anything else is
// 404, so another owner's pool does not leak its existence.
func (s *Server) load(c *gin.Context) (*pool.Pool, bool) {
	ref := c.Param("id")
	cl := callerOf(c)
	ctx := c.Request.Context()
	var p *pool.Pool
	var err error
	if strings.HasPrefix(ref, "p-") {
		p, err = s.Store.GetPool(ctx, ref)
	}
	if p == nil && (err == nil || errors.Is(err, store.ErrNotFound)) {
		p, err = s.Store.LookupPool(ctx, cl.User, ref)
	}
	switch {
	case errors.Is(err, store.ErrNotFound) || (err == nil && !cl.canSee(p)):
		abort(c, http.StatusNotFound, fmt.Sprintf("pool %q not found", ref))
		return nil, false
	case err != nil:
		s.fail(c, err)
		return nil, false
	}
	return p, true
}

func (s *Server) listPools(c *gin.Context) {
	pools, _, err := s.Store.ListPools(c.Request.Context(), 0, 0)
	if err != nil {
		s.fail(c, err)
		return
	}
	cl := callerOf(c)
	pools = slices.DeleteFunc(pools, func(p *pool.Pool) bool { return !cl.canSee(p) })
	slices.SortFunc(pools, func(a, b *pool.Pool) int {
		return strings.Compare(a.Owner+"/"+a.Spec.Name, b.Owner+"/"+b.Spec.Name)
	})
	out := PoolList{Count: len(pools), Pools: make([]PoolInfo, 0, len(pools))}
	for _, p := range pools {
		// Listing skips Nomad's per-allocation stats: one pool's status
		// has them.
		out.Pools = append(out.Pools, s.summary(c.Request.Context(), p))
	}
	c.JSON(http.StatusOK, out)
}

func (s *Server) getPool(c *gin.Context) {
	if p, ok := s.load(c); ok {
		c.JSON(http.StatusOK, s.info(c.Request.Context(), p))
	}
}

func (s *Server) createPool(c *gin.Context) {
	spec, ok := s.readSpec(c, callerOf(c).User)
	if !ok {
		return
	}
	now := s.Now().UTC()
	p := &pool.Pool{ID: pool.NewID(), Owner: callerOf(c).User, Spec: spec, TemplateGeneration: 1, CreatedAt: now, UpdatedAt: now}
	if err := s.Store.CreatePool(c.Request.Context(), p); err != nil {
		s.fail(c, err)
		return
	}
	s.Log.Info("pool created", "pool", p.Spec.Name, "pool_id", p.ID, "owner", p.Owner)
	c.JSON(http.StatusCreated, s.info(c.Request.Context(), p))
}

func (s *Server) updatePool(c *gin.Context) {
	p, ok := s.load(c)
	if !ok {
		return
	}
	ifMatch, err := parseIfMatch(c.GetHeader("If-Match"))
	if err != nil {
		abort(c, http.StatusBadRequest, err.Error())
		return
	}
	spec, ok := s.readSpec(c, p.Owner)
	if !ok {
		return
	}
	if spec.Name != p.Spec.Name {
		invalid(c, "invalid pool spec", []pool.FieldError{{Field: "name", Message: fmt.Sprintf("cannot be changed (is %q): create a new pool instead", p.Spec.Name)}})
		return
	}
	s.modify(c, p, func(cur *pool.Pool) error {
		if ifMatch != 0 && cur.Generation != ifMatch {
			return fmt.Errorf("%w (current generation %d)", errStale, cur.Generation)
		}
		if pool.MembersChanged(&cur.Spec, &spec) {
			cur.TemplateGeneration++
		}
		cur.Spec = spec
		return nil
	}, http.StatusOK)
}

func (s *Server) deletePool(c *gin.Context) {
	p, ok := s.load(c)
	if !ok {
		return
	}
	if p.Deleting {
		c.JSON(http.StatusAccepted, s.info(c.Request.Context(), p))
		return
	}
	if p.Spec.Active {
		s.fail(c, store.ErrPoolActive)
		return
	}
	// Deleting purges the job: a member still running (the leader has not
	// begun its drain yet) or draining would lose the work it is
	// finishing. A drain ends at drain.timeout at the latest.
	members, err := s.Store.ListMembers(c.Request.Context(), p.ID)
	if err != nil {
		s.fail(c, err)
		return
	}
	for _, m := range members {
		if m.Phase == pool.PhaseDraining || m.Phase == pool.PhaseRunning {
			abort(c, http.StatusConflict, fmt.Sprintf("member %s is still %s (its in-flight work ends within drain.timeout, %s): delete the pool once its members have stopped; they are draining", m.ID, m.Phase, p.Spec.Drain.Timeout))
			return
		}
	}
	if err := s.Store.MarkDeleting(c.Request.Context(), p, s.Now().UTC()); err != nil {
		s.fail(c, err)
		return
	}
	s.Log.Info("pool deleting", "pool", p.Spec.Name, "pool_id", p.ID)
	c.JSON(http.StatusAccepted, s.info(c.Request.Context(), p))
}

func (s *Server) setSize(c *gin.Context) {
	p, ok := s.load(c)
	if !ok {
		return
	}
	var req SizeRequest
	if !s.decode(c, &req) {
		return
	}
	if req.DesiredCount == nil {
		invalid(c, "invalid size request", []pool.FieldError{{Field: "desired_count", Message: "is required"}})
		return
	}
	if err := pool.ValidateCount(*req.DesiredCount, s.Defaults.Limits); err != nil {
		s.fail(c, err)
		return
	}
	s.modify(c, p, func(cur *pool.Pool) error {
		if cur.Spec.Autoscaling != nil {
			return errAutoscaling
		}
		cur.Spec.DesiredCount = *req.DesiredCount
		return nil
	}, http.StatusOK)
}

func (s *Server) setActive(active bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		if p, ok := s.load(c); ok {
			s.modify(c, p, func(cur *pool.Pool) error { cur.Spec.Active = active; return nil }, http.StatusOK)
		}
	}
}

// modify applies fn to the stored pool with check-and-set retries and
// answers with the result.
func (s *Server) modify(c *gin.Context, p *pool.Pool, fn func(*pool.Pool) error, status int) {
	next, err := s.Store.ModifyPool(c.Request.Context(), p.ID, func(cur *pool.Pool) error {
		if cur.Deleting {
			return errDeleting
		}
		if err := fn(cur); err != nil {
			return err
		}
		cur.UpdatedAt = s.Now().UTC()
		return nil
	})
	if errors.Is(err, errDeleting) {
		abort(c, http.StatusConflict, errDeleting.Error())
		return
	}
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(status, s.info(c.Request.Context(), next))
}

// parseIfMatch reads a generation from If-Match ("7" or 7); 0 when absent.
func parseIfMatch(h string) (int64, error) {
	h = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(h), "W/"))
	if h == "" || h == "*" {
		return 0, nil
	}
	n, err := strconv.ParseInt(strings.Trim(h, `"`), 10, 64)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("If-Match must be the pool's generation, such as \"7\"; got %q", h)
	}
	return n, nil
}

// info assembles a PoolInfo from the records and what Nomad and Consul say
// now, CPU and memory included. When they cannot be reached, members are
// shown from the records alone.
func (s *Server) info(ctx context.Context, p *pool.Pool) PoolInfo {
	out := s.summary(ctx, p)
	s.usage(ctx, &out)
	return out
}

// summary is info without Nomad's per-allocation stats.
func (s *Server) summary(ctx context.Context, p *pool.Pool) PoolInfo {
	out := PoolInfo{
		PoolID: p.ID, Name: p.Spec.Name, Owner: p.Owner, DesiredCount: p.Spec.DesiredCount,
		Active: p.Spec.Active, State: p.State(), Generation: p.Generation,
		TemplateGeneration: p.TemplateGeneration, NomadJobID: p.JobID(), Spec: p.Spec,
		CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt, Members: []MemberInfo{},
	}
	if a := p.Spec.Autoscaling; a != nil {
		out.Autoscaling = &AutoscalingInfo{Autoscaling: *a, Desired: p.Target()}
		if sc, err := s.Store.GetScale(ctx, p.ID); err != nil {
			s.Log.Warn("read scale", "pool_id", p.ID, "error", err)
		} else if sc != nil {
			out.Autoscaling.Desired, out.Autoscaling.Panic, out.Autoscaling.Observed = sc.Desired, sc.Panic, sc.Observed
			out.Autoscaling.ColdStart, out.Autoscaling.DecidedAt = sc.ColdStart, sc.UpdatedAt
		}
	}
	if sc := p.Spec.Scaler; sc != nil {
		out.Scaler = s.scaler(ctx, p.ID, sc)
	}
	members, err := s.Store.ListMembers(ctx, p.ID)
	if err != nil {
		s.Log.Warn("list members", "pool_id", p.ID, "error", err)
		return out
	}
	obs := map[string]reconcile.Observation{}
	if snap, err := s.Nomad.Observe(ctx, p); err == nil {
		obs = snap.Members
	} else if !errors.Is(err, context.Canceled) {
		s.Log.Warn("observe pool", "pool_id", p.ID, "error", err)
	}
	slices.SortFunc(members, func(a, b *pool.Member) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	for _, m := range members {
		o := obs[m.ID]
		st := reconcile.MemberState(m, o)
		if st == pool.MemberAlive {
			out.AliveMembers++
		}
		mi := MemberInfo{
			ID: m.ID, State: st, Healthy: o.Healthy, Address: o.Address, AllocID: o.AllocID,
			Generation: m.Generation, Since: m.Since,
		}
		if s.Traffic != nil {
			t := s.Traffic.Member(p.ID, m.ID)
			mi.HTTPRPS, mi.TCPRPS, mi.MethodRPS = t.HTTPRPS, t.TCPRPS, t.MethodRPS
			mi.CombinedRPS = t.HTTPRPS + t.TCPRPS + t.MethodRPS
			mi.MethodInflight = float64(t.MethodInFlight)
			u := &out.Utilization
			u.HTTPRPS += t.HTTPRPS
			u.TCPRPS += t.TCPRPS
			u.MethodRPS += t.MethodRPS
			u.CombinedRPS += mi.CombinedRPS
			u.HTTPInflight += float64(t.HTTPInFlight)
			u.MethodInflight += float64(t.MethodInFlight)
		}
		out.Members = append(out.Members, mi)
	}
	return out
}

// scaler shows a pool's scaler with its last run, if any.
func (s *Server) scaler(ctx context.Context, poolID string, sc *pool.Scaler) *ScalerInfo {
	out := &ScalerInfo{Script: sc.Script, Interval: sc.Interval, Output: []string{}}
	st, err := s.Store.GetScalerStatus(ctx, poolID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return out
	case err != nil:
		s.Log.Warn("read scaler status", "pool_id", poolID, "error", err)
		return out
	}
	last := st.LastRun
	out.LastRun, out.Duration, out.Outcome = &last, st.Duration, st.Outcome
	out.Error, out.ErrorLine, out.Runs = st.Error, st.ErrorLine, st.Runs
	if st.Output != nil {
		out.Output = st.Output
	}
	return out
}

// usageTimeout bounds the wait for one allocation's stats.
const usageTimeout = 2 * time.Second

// usage fills CPU and memory from Nomad's allocation stats for members
// that run, reading them in parallel; a member whose stats cannot be read
// shows zero.
func (s *Server) usage(ctx context.Context, out *PoolInfo) {
	var wg sync.WaitGroup
	for i := range out.Members {
		m := &out.Members[i]
		if m.AllocID == "" || (m.State != pool.MemberAlive && m.State != pool.MemberStarting && m.State != pool.MemberDraining) {
			continue
		}
		wg.Go(func() {
			// Stats are best effort: a slow client must not hold the answer.
			ctx, cancel := context.WithTimeout(ctx, usageTimeout)
			defer cancel()
			cpu, mem, err := s.Nomad.Usage(ctx, m.AllocID)
			if err != nil {
				s.Log.Debug("allocation usage", "alloc_id", m.AllocID, "error", err)
				return
			}
			m.CPUPercent, m.MemoryPercent = cpu, mem
		})
	}
	wg.Wait()
	n := 0
	for _, m := range out.Members {
		if m.State == pool.MemberAlive {
			out.Utilization.AvgCPUPercent += m.CPUPercent
			out.Utilization.AvgMemoryPercent += m.MemoryPercent
			n++
		}
	}
	if n > 0 {
		out.Utilization.AvgCPUPercent /= float64(n)
		out.Utilization.AvgMemoryPercent /= float64(n)
	}
}
