package readygrpc

import (
	"fmt"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"google.golang.org/grpc/interop"
	testpb "google.golang.org/grpc/interop/grpc_testing"
)

// TestInteropCases runs grpc-go's interop test cases (the ones that need
// no cloud credentials or load balancer) against grpc-go's interop
// TestService, over every mode.
func TestInteropCases(t *testing.T) {
	cases := []struct {
		name string
		run  func(t *testing.T, tc testpb.TestServiceClient)
	}{
		{"empty_unary", func(t *testing.T, tc testpb.TestServiceClient) { interop.DoEmptyUnaryCall(opCtx(t), tc) }},
		{"large_unary", func(t *testing.T, tc testpb.TestServiceClient) { interop.DoLargeUnaryCall(opCtx(t), tc) }},
		{"client_streaming", func(t *testing.T, tc testpb.TestServiceClient) { interop.DoClientStreaming(opCtx(t), tc) }},
		{"server_streaming", func(t *testing.T, tc testpb.TestServiceClient) { interop.DoServerStreaming(opCtx(t), tc) }},
		{"ping_pong", func(t *testing.T, tc testpb.TestServiceClient) { interop.DoPingPong(opCtx(t), tc) }},
		{"empty_stream", func(t *testing.T, tc testpb.TestServiceClient) { interop.DoEmptyStream(opCtx(t), tc) }},
		{"timeout_on_sleeping_server", func(t *testing.T, tc testpb.TestServiceClient) { interop.DoTimeoutOnSleepingServer(opCtx(t), tc) }},
		{"cancel_after_begin", func(t *testing.T, tc testpb.TestServiceClient) { interop.DoCancelAfterBegin(opCtx(t), tc) }},
		{"cancel_after_first_response", func(t *testing.T, tc testpb.TestServiceClient) { interop.DoCancelAfterFirstResponse(opCtx(t), tc) }},
		{"custom_metadata", func(t *testing.T, tc testpb.TestServiceClient) { interop.DoCustomMetadata(opCtx(t), tc) }},
		{"status_code_and_message", func(t *testing.T, tc testpb.TestServiceClient) { interop.DoStatusCodeAndMessage(opCtx(t), tc) }},
		{"special_status_message", func(t *testing.T, tc testpb.TestServiceClient) { interop.DoSpecialStatusMessage(opCtx(t), tc) }},
	}
	for _, m := range modes(t) {
		t.Run(m.name, func(t *testing.T) {
			s := startServerWith(t, m, interop.NewTestServer())
			cc := dial(t, s.addr, m.client...)
			tc := testpb.NewTestServiceClient(cc)
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) { runInterop(t, func() { c.run(t, tc) }) })
			}
			t.Run("unimplemented_method", func(t *testing.T) {
				runInterop(t, func() { interop.DoUnimplementedMethod(opCtx(t), cc) })
			})
			t.Run("unimplemented_service", func(t *testing.T) {
				runInterop(t, func() { interop.DoUnimplementedService(opCtx(t), testpb.NewUnimplementedServiceClient(cc)) })
			})
		})
	}
}

// fatalRecorder is a testing.TB that records Fatalf instead of ending
// the test.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Helper() {}

func (r *fatalRecorder) Fatalf(format string, args ...any) { r.msg = fmt.Sprintf(format, args...) }

// TestRunInterop checks that a failing interop check fails its test
// through runInterop instead of ending the process or passing: the checks
// above cannot pass silently.
func TestRunInterop(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := lis.Addr().String()
	require.NoError(t, lis.Close()) // nothing listens there now
	cc := dial(t, addr, plainMode().client...)
	rec := &fatalRecorder{TB: t}
	runInterop(rec, func() { interop.DoEmptyUnaryCall(opCtx(t), testpb.NewTestServiceClient(cc)) })
	assert.Contains(t, rec.msg, "interop check failed")
	assert.Contains(t, rec.msg, "/TestService/EmptyCall RPC failed")
}
