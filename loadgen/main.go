// ka-loadgen: an open-loop load generator for the calibration's latency-critical victim.
//
// It sends Redis GETs at a fixed rate over a fixed number of connections, whether or not
// earlier replies have arrived (open loop: a slow server faces a growing queue, as it does
// from real clients), and prints one JSON object with the latency percentiles of the
// replies. A closed-loop client (redis-benchmark -c 1) waits for each reply before the next
// request, so a slow server is sent less work and, on a VM, mostly measures how slowly an
// idle vCPU wakes up.
//
// The client stands for callers on other nodes: what it reports (p50_ms ... max_ms) is each
// request's time from leaving the client to its reply arriving. Requests are written when
// due whether or not earlier replies have arrived, so a server that stalls faces the
// requests that queued behind the stall, and they count. The Go runtime's timers wake at
// about 1 ms granularity, so requests go out in small bursts (everything due by the wake-up,
// in one write); how late each was written against its slot in the schedule is reported
// separately (send_lag_*), and due_p50/due_p99 are the latencies counted from the slot —
// the client's own lateness included.
//
// Only the Go standard library: the protocol needed is two RESP frames.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"
)

type result struct {
	Target         string  `json:"target"`
	RatePerS       float64 `json:"rate_per_s"`
	Connections    int     `json:"connections"`
	Seconds        float64 `json:"seconds"`
	Sent           int     `json:"sent"`
	Completed      int     `json:"completed"`
	AchievedPerS   float64 `json:"achieved_per_s"`
	MeanMs         float64 `json:"mean_ms"`
	P50Ms          float64 `json:"p50_ms"`
	P90Ms          float64 `json:"p90_ms"`
	P99Ms          float64 `json:"p99_ms"`
	P999Ms         float64 `json:"p999_ms"`
	MaxMs          float64 `json:"max_ms"`
	DueP50Ms       float64 `json:"due_p50_ms"`
	DueP99Ms       float64 `json:"due_p99_ms"`
	SendLagP50Ms   float64 `json:"send_lag_p50_ms"`
	SendLagP99Ms   float64 `json:"send_lag_p99_ms"`
	MeasuredFrom   string  `json:"latency_measured_from"`
	WarmupSeconds  float64 `json:"warmup_seconds"`
	ValueBytes     int     `json:"value_bytes"`
	ClientGoMaxPro int     `json:"client_gomaxprocs"`
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "ka-loadgen: "+format+"\n", args...)
	os.Exit(1)
}

func frame(args ...string) []byte {
	b := []byte("*" + strconv.Itoa(len(args)) + "\r\n")
	for _, a := range args {
		b = append(b, "$"+strconv.Itoa(len(a))+"\r\n"+a+"\r\n"...)
	}
	return b
}

// readReply reads one RESP reply (simple string, error, integer or bulk string).
func readReply(r *bufio.Reader) error {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return err
	}
	if len(line) < 3 {
		return fmt.Errorf("short reply %q", line)
	}
	switch line[0] {
	case '+', ':':
		return nil
	case '-':
		return fmt.Errorf("server error: %s", line[1:len(line)-2])
	case '$':
		n, err := strconv.Atoi(string(line[1 : len(line)-2]))
		if err != nil {
			return fmt.Errorf("bad bulk length %q", line)
		}
		if n < 0 {
			return errors.New("GET of the victim key returned nil: the key was not set")
		}
		_, err = r.Discard(n + 2)
		return err
	}
	return fmt.Errorf("unexpected reply %q", line)
}

type sample struct{ latency, lag, service time.Duration }

func percentile(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	if i < 0 {
		i = 0
	}
	return float64(sorted[i]) / 1e6
}

func main() {
	addr := flag.String("addr", "127.0.0.1:6379", "Redis server host:port")
	rate := flag.Float64("rate", 5000, "requests per second, all connections together")
	conns := flag.Int("connections", 4, "connections; request i goes to connection i mod N")
	seconds := flag.Float64("seconds", 5, "measured duration")
	warmup := flag.Float64("warmup", 0.5, "seconds sent at the same rate before measuring (not counted)")
	valueBytes := flag.Int("value-bytes", 64, "size of the value GET returns")
	key := flag.String("key", "kubeattention:victim", "key to GET (set once at start)")
	timeout := flag.Duration("timeout", 10*time.Second, "give up on replies this long after the last request was due")
	flag.Parse()
	if !(*rate > 0 && *rate <= 1e6) {
		fail("--rate: must be in (0, 1e6] requests/s, got %v", *rate)
	}
	if *conns < 1 || *conns > 1024 {
		fail("--connections: must be 1..1024, got %d", *conns)
	}
	if !(*seconds > 0 && *seconds <= 600) || !(*warmup >= 0 && *warmup <= 60) {
		fail("--seconds must be in (0, 600] and --warmup in [0, 60]")
	}

	setup, err := net.DialTimeout("tcp", *addr, 2*time.Second)
	if err != nil {
		fail("cannot connect to %s: %v", *addr, err)
	}
	value := make([]byte, *valueBytes)
	for i := range value {
		value[i] = 'x'
	}
	setup.Write(frame("SET", *key, string(value)))
	if err := readReply(bufio.NewReader(setup)); err != nil {
		fail("SET %s on %s: %v", *key, *addr, err)
	}
	setup.Close()

	get := frame("GET", *key)
	interval := time.Duration(float64(time.Second) / *rate)
	total := int(math.Round((*seconds + *warmup) * *rate))
	skip := int(math.Round(*warmup * *rate))
	start := time.Now().Add(50 * time.Millisecond)
	due := func(i int) time.Time { return start.Add(time.Duration(i) * interval) }

	samples := make([]sample, total)
	done := make([]bool, total)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	sent := make([]int, *conns)
	for c := 0; c < *conns; c++ {
		conn, err := net.DialTimeout("tcp", *addr, 2*time.Second)
		if err != nil {
			fail("cannot connect to %s: %v", *addr, err)
		}
		conn.(*net.TCPConn).SetNoDelay(true)
		writes := make(chan [2]int64, total / *conns + 2) // (request index, write time in ns since start)
		wg.Add(2)
		go func(c int) { // writer: this connection's requests, each as soon as it is due
			defer wg.Done()
			defer close(writes)
			var batch []byte
			for i := c; i < total; {
				if d := time.Until(due(i)); d > 0 {
					time.Sleep(d) // the runtime's timers wake at about 1 ms granularity
				}
				// Everything due by now goes in one write (pipelined), as a burst of clients would.
				now := time.Since(start)
				batch, first := batch[:0], i
				for ; i < total && time.Duration(i)*interval <= now; i += *conns {
					batch = append(batch, get...)
				}
				if _, err := conn.Write(batch); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("write to %s: %w", *addr, err)
					}
					mu.Unlock()
					return
				}
				for j := first; j < i; j += *conns {
					sent[c]++
					writes <- [2]int64{int64(j), int64(now)}
				}
			}
		}(c)
		go func() { // reader: replies come back in request order on a connection
			defer wg.Done()
			r := bufio.NewReaderSize(conn, 64<<10)
			for w := range writes {
				conn.SetReadDeadline(due(total).Add(*timeout))
				if err := readReply(r); err != nil {
					mu.Lock()
					if firstErr == nil && !errors.Is(err, io.EOF) {
						firstErr = fmt.Errorf("reply from %s: %w", *addr, err)
					} else if firstErr == nil {
						firstErr = fmt.Errorf("%s closed the connection", *addr)
					}
					mu.Unlock()
					conn.Close()
					for range writes {
					}
					return
				}
				now := time.Since(start)
				i := int(w[0])
				dueAt := time.Duration(i) * interval
				wrote := time.Duration(w[1])
				samples[i] = sample{latency: now - dueAt, lag: wrote - dueAt, service: now - wrote}
				done[i] = true
			}
			conn.Close()
		}()
	}
	wg.Wait()
	if firstErr != nil {
		fail("%v", firstErr)
	}

	var lat, lag, svc []time.Duration
	var sum time.Duration
	for i := skip; i < total; i++ {
		if done[i] {
			lat = append(lat, samples[i].latency)
			lag = append(lag, samples[i].lag)
			svc = append(svc, samples[i].service)
			sum += samples[i].service
		}
	}
	if len(lat) == 0 {
		fail("no replies were measured")
	}
	for _, s := range [][]time.Duration{lat, lag, svc} {
		sort.Slice(s, func(a, b int) bool { return s[a] < s[b] })
	}
	nsent := 0
	for _, n := range sent {
		nsent += n
	}
	out := result{
		Target: *addr, RatePerS: *rate, Connections: *conns, Seconds: *seconds,
		Sent: nsent - skip, Completed: len(lat),
		AchievedPerS: float64(len(lat)) / *seconds,
		MeanMs:       float64(sum) / float64(len(svc)) / 1e6,
		P50Ms:        percentile(svc, 0.50), P90Ms: percentile(svc, 0.90), P99Ms: percentile(svc, 0.99),
		P999Ms: percentile(svc, 0.999), MaxMs: float64(svc[len(svc)-1]) / 1e6,
		DueP50Ms: percentile(lat, 0.50), DueP99Ms: percentile(lat, 0.99),
		SendLagP50Ms: percentile(lag, 0.50), SendLagP99Ms: percentile(lag, 0.99),
		MeasuredFrom:  "write of the request (open loop: writes never wait for replies)",
		WarmupSeconds: *warmup, ValueBytes: *valueBytes, ClientGoMaxPro: runtimeGOMAXPROCS(),
	}
	enc := json.NewEncoder(os.Stdout)
	if err := enc.Encode(out); err != nil {
		fail("writing the result: %v", err)
	}
}
