package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad-autoscaler/plugins/base"
	"github.com/hashicorp/nomad-autoscaler/plugins/target"
	"github.com/hashicorp/nomad-autoscaler/sdk"

	"github.com/tidepool-run/tidepool/plugin/api"
	"github.com/tidepool-run/tidepool/plugin/api/client"
	"github.com/tidepool-run/tidepool/plugin/pool"
)

// PluginName is the name the autoscaler knows the plugin by: the agent
// config's `driver`.
const PluginName = "tidepool-autoscaler-target"

// Config keys. The plugin config (agent side) carries the API address and
// token; a policy's target block names the pool and may override both.
const (
	ConfigKeyAddress = "address"
	ConfigKeyToken   = "token"
	ConfigKeyPool    = "pool"
)

// Status meta keys, shown in the autoscaler's logs and usable by strategies.
const (
	MetaKeyState        = "tidepool_state"
	MetaKeyAliveMembers = "tidepool_alive_members"
	MetaKeyPoolID       = "tidepool_pool_id"
)

// callTimeout bounds one API call: the SDK's methods take no context.
const callTimeout = 30 * time.Second

// ErrAutoscaled is returned for a pool that has its own autoscaling block:
// Tidepool's autoscaler owns its size, and the size API refuses (409).
var ErrAutoscaled = errors.New("the pool has an autoscaling block, so Tidepool's own autoscaler owns its size; " +
	"remove the pool's autoscaling block or this scaling policy")

var _ target.Target = (*Target)(nil)

// Target implements the nomad-autoscaler target plugin interface against the
// Tidepool REST API.
type Target struct {
	log hclog.Logger

	mu     sync.Mutex
	config map[string]string
}

// NewTarget returns a Target that needs SetConfig before use.
func NewTarget(log hclog.Logger) *Target {
	return &Target{log: log.Named("tidepool_target"), config: map[string]string{}}
}

// PluginInfo identifies the plugin to the autoscaler.
func (t *Target) PluginInfo() (*base.PluginInfo, error) {
	return &base.PluginInfo{Name: PluginName, PluginType: sdk.PluginTypeTarget}, nil
}

// SetConfig takes the agent's plugin config. The address defaults to
// $TIDEPOOL_ADDR, then the CLI's default; the token to $TIDEPOOL_TOKEN.
func (t *Target) SetConfig(config map[string]string) error {
	cfg := map[string]string{
		ConfigKeyAddress: firstNonEmpty(config[ConfigKeyAddress], os.Getenv("TIDEPOOL_ADDR"), client.DefaultAddress),
		ConfigKeyToken:   firstNonEmpty(config[ConfigKeyToken], os.Getenv("TIDEPOOL_TOKEN")),
	}
	if _, err := client.New(cfg[ConfigKeyAddress], cfg[ConfigKeyToken]); err != nil {
		return fmt.Errorf("tidepool target config: %w", err)
	}
	if cfg[ConfigKeyToken] == "" {
		return errors.New("tidepool target config: token is required (a Tidepool token with the use-pools permission)")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.config = cfg
	t.log.Debug("configured", "address", cfg[ConfigKeyAddress])
	return nil
}

// Status reads the pool: Count is its desired count, and it is Ready when
// it is active with every desired member alive (a pool mid-change, like a
// Nomad job mid-deployment, is not scaled again until it settles).
func (t *Target) Status(config map[string]string) (*sdk.TargetStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	c, ref, err := t.client(config)
	if err != nil {
		return nil, err
	}
	info, err := c.GetPool(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("read pool %q: %w", ref, err)
	}
	if info.Spec.Autoscaling != nil {
		return nil, fmt.Errorf("pool %q: %w", ref, ErrAutoscaled)
	}
	return status(info), nil
}

// status maps a pool to the autoscaler's view of it.
func status(info *api.PoolInfo) *sdk.TargetStatus {
	return &sdk.TargetStatus{
		Count: int64(info.DesiredCount),
		Ready: info.State == pool.StateActive && info.AliveMembers == info.DesiredCount,
		Meta: map[string]string{
			MetaKeyState:        string(info.State),
			MetaKeyAliveMembers: strconv.Itoa(info.AliveMembers),
			MetaKeyPoolID:       info.PoolID,
		},
	}
}

// Scale sets the pool's desired count through the size API. Tidepool then
// adds members or drains the excess ones (in-flight aware), as for any
// set-size.
func (t *Target) Scale(action sdk.ScalingAction, config map[string]string) error {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	c, ref, err := t.client(config)
	if err != nil {
		return err
	}
	if action.Count < 0 {
		return fmt.Errorf("pool %q: cannot scale to %d", ref, action.Count)
	}
	info, err := c.SetSize(ctx, ref, int(action.Count))
	var apiErr *client.Error
	if errors.As(err, &apiErr) && apiErr.Status == http.StatusConflict {
		return fmt.Errorf("scale pool %q to %d: refused by Tidepool (409: %s): %w", ref, action.Count, apiErr.Message, ErrAutoscaled)
	}
	if err != nil {
		return fmt.Errorf("scale pool %q to %d: %w", ref, action.Count, err)
	}
	t.log.Info("scaled pool", "pool", ref, "desired_count", info.DesiredCount, "reason", action.Reason)
	return nil
}

// client builds an API client for one call from the plugin config and the
// policy's target config (which may override address and token).
func (t *Target) client(config map[string]string) (*client.Client, string, error) {
	ref := config[ConfigKeyPool]
	if ref == "" {
		return nil, "", fmt.Errorf("the policy's target block needs %s = \"<pool name or id>\"", ConfigKeyPool)
	}
	t.mu.Lock()
	addr := firstNonEmpty(config[ConfigKeyAddress], t.config[ConfigKeyAddress])
	token := firstNonEmpty(config[ConfigKeyToken], t.config[ConfigKeyToken])
	t.mu.Unlock()
	c, err := client.New(addr, token)
	if err != nil {
		return nil, "", fmt.Errorf("pool %q: %w", ref, err)
	}
	return c, ref, nil
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}
