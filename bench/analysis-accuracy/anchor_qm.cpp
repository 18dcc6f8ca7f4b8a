/* anchor_qm.cpp - Queen Mary's key detector and tempo/beat tracker (Debian libqm-dsp-dev)
 * on one audio file, as an anchor for bench/analysis-accuracy.
 *
 *   anchor_qm FILE   ->   {"tempo": 124.02, "key": "A minor", "beats": [0.51, ...],
 *                          "key_timeline": [[0.0, "A minor"], ...]}
 *
 * Set up as Sonic Visualiser's qm-vamp-plugins do (qm-keydetector, qm-tempotracker):
 * - Key: GetKeyMode at the file's rate, tuning 440 Hz, 10 chroma frames averaged and a
 *   10-frame median (the plugin's "length" 10); blocks of getBlockSize() every
 *   getHopSize() samples. The plugin answers a key per hop; one key for the file is the
 *   one that lasted longest in total, as Mixxx reduces the same detector's output.
 * - Beats: the complex-spectral-difference DetectionFunction, step 512 and frame 1024 at
 *   44.1 kHz (0.01161 s), no adaptive whitening, dbRise 3; the first two values dropped;
 *   TempoTrackV2 at its defaults (input tempo 120, unconstrained, alpha 0.9, tightness
 *   4). One tempo for the file: 60 / the median beat interval (Mixxx's reduction).
 * The signal is the file's channels averaged, read with libsndfile (FLAC, WAV).
 */
#include <sndfile.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include <dsp/keydetection/GetKeyMode.h>
#include <dsp/onsets/DetectionFunction.h>
#include <dsp/tempotracking/TempoTrackV2.h>

static const char *const PITCH[12] = {"C",  "C#", "D",  "D#", "E",  "F",
                                      "F#", "G",  "G#", "A",  "A#", "B"};

/* GetKeyMode's answer: 1..12 C..B major, 13..24 C..B minor, else none. */
static std::string key_name(int key)
{
	if (key < 1 || key > 24)
		return "";
	return std::string(PITCH[(key - 1) % 12]) + (key > 12 ? " minor" : " major");
}

static int read_mono(const char *path, std::vector<double> &out, int &sr)
{
	SF_INFO info = {};
	SNDFILE *f = sf_open(path, SFM_READ, &info);
	if (!f) {
		fprintf(stderr, "anchor_qm: %s: %s\n", path, sf_strerror(NULL));
		return -1;
	}
	sr = info.samplerate;
	std::vector<float> buf(4096 * (size_t)info.channels);
	sf_count_t n;
	while ((n = sf_readf_float(f, buf.data(), 4096)) > 0) {
		for (sf_count_t i = 0; i < n; i++) {
			double s = 0.0;
			for (int c = 0; c < info.channels; c++)
				s += buf[(size_t)i * info.channels + c];
			out.push_back(s / info.channels);
		}
	}
	sf_close(f);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: anchor_qm FILE\n");
		return 2;
	}
	std::vector<double> x;
	int sr = 0;
	if (read_mono(argv[1], x, sr) != 0)
		return 1;

	/* key */
	GetKeyMode gkm(sr, 440.0f, 10, 10);
	size_t block = gkm.getBlockSize(), hop = gkm.getHopSize();
	std::vector<double> frame(block);
	std::map<int, double> key_seconds;
	std::vector<std::pair<double, int>> timeline;
	for (size_t pos = 0; pos < x.size(); pos += hop) {
		for (size_t i = 0; i < block; i++)
			frame[i] = pos + i < x.size() ? x[pos + i] : 0.0;
		int key = gkm.process(frame.data());
		key_seconds[key] += (double)hop / sr;
		if (timeline.empty() || timeline.back().second != key)
			timeline.push_back({(double)pos / sr, key});
	}
	int best = 0;
	double best_s = -1.0;
	for (auto &kv : key_seconds)
		if (kv.first >= 1 && kv.first <= 24 && kv.second > best_s) {
			best = kv.first;
			best_s = kv.second;
		}

	/* tempo and beats */
	const unsigned step = (unsigned)lrint(sr * 0.01161);
	DFConfig cfg;
	cfg.stepSize = step;
	cfg.frameLength = 2 * step;
	cfg.DFType = DF_COMPLEXSD;
	cfg.dbRise = 3;
	cfg.adaptiveWhitening = false;
	cfg.whiteningRelaxCoeff = -1;
	cfg.whiteningFloor = -1;
	DetectionFunction df_fn(cfg);
	std::vector<double> dfo, win(cfg.frameLength);
	for (size_t pos = 0; pos < x.size(); pos += step) {
		for (size_t i = 0; i < cfg.frameLength; i++)
			win[i] = pos + i < x.size() ? x[pos + i] : 0.0;
		dfo.push_back(df_fn.processTimeDomain(win.data()));
	}
	size_t nz = dfo.size();
	while (nz > 0 && !(dfo[nz - 1] > 0.0))
		nz--;
	std::vector<double> df, period, tempi, beats;
	for (size_t i = 2; i < nz; i++) {
		df.push_back(dfo[i]);
		period.push_back(0.0);
	}
	if (!df.empty()) {
		TempoTrackV2 tt((float)sr, step);
		tt.calculateBeatPeriod(df, period, tempi, 120.0, false);
		tt.calculateBeats(df, period, beats, 0.9, 4.0);
	}
	std::vector<double> ibi;
	for (size_t i = 1; i < beats.size(); i++)
		ibi.push_back((beats[i] - beats[i - 1]) * step / sr);
	double tempo = 0.0;
	if (!ibi.empty()) {
		std::sort(ibi.begin(), ibi.end());
		double med = ibi.size() % 2 ? ibi[ibi.size() / 2]
		                            : 0.5 * (ibi[ibi.size() / 2 - 1] + ibi[ibi.size() / 2]);
		if (med > 0)
			tempo = 60.0 / med;
	}

	printf("{\"tempo\": %.4f, \"key\": ", tempo);
	if (best)
		printf("\"%s\"", key_name(best).c_str());
	else
		printf("null");
	printf(", \"beats\": [");
	for (size_t i = 0; i < beats.size(); i++)
		printf("%s%.4f", i ? ", " : "", beats[i] * step / sr);
	printf("], \"key_timeline\": [");
	for (size_t i = 0; i < timeline.size(); i++)
		printf("%s[%.3f, \"%s\"]", i ? ", " : "", timeline[i].first,
		       key_name(timeline[i].second).c_str());
	printf("]}\n");
	return 0;
}
