/* Compiled kernels of the dump stage, called through ctypes (which releases the GIL, so the
 * read-ahead thread reads the next block meanwhile).
 *
 * Each function does, jet by jet, exactly the arithmetic of its numpy reference, in the same
 * order of operations (compiled with -ffp-contract=off, so no fused multiply-adds), so that
 * both give the same bytes:
 *   ff_build_tracks   flavourflow.dump.blocks.build (signs, significances, order, padding),
 *                     flavourflow.dump.taggers.ip2d_llr_flat and flavourflow.dump.vertexing.find
 *   ff_ghost_tracks   flavourflow.dump.physlite._ghost_tracks_numpy (PHYSLITE tracks by link)
 *   ff_lzf_encode     flavourflow.dump.lzf.encode_chunks
 *   ff_valid_prefix   flavourflow.dump.h5._valid_prefix
 *   ff_interleave     numpy's assignment of columns to the fields of records
 * tests/test_kernels.py compares each with its reference. ff_lzf_rows (the jets' chunks) has
 * none: without the kernels h5py's own LZF filter compresses them, and the tests read what it
 * writes back through h5py.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- constants: the same values as the Python modules ---------------------------------- */
#define PI 3.141592653589793
#define MIN_SIGNIFICANCE 2.0f
#define MAX_CANDIDATES 8
#define PION_MASS 139.57
#define PROTON_MASS 938.27
#define K0S_MASS 497.61
#define LAMBDA_MASS 1115.68
#define K0S_WINDOW 25.0
#define LAMBDA_WINDOW 10.0
#define MAX_RADIUS 100.0
#define MAX_Z_PULL 4.0
#define MIN_SIN_OPENING 1e-3

/* field order of offsets[] (TRACK_DTYPE) */
enum { F_PT, F_ETA, F_PHI, F_DETA, F_DPHI, F_DR, F_PTFRAC, F_CHARGE, F_D0, F_Z0, F_D0U, F_Z0U,
       F_SD0, F_SZ0, F_VALID, N_FIELDS };

/* ---- the IP2D templates (taggers.py) --------------------------------------------------- */
static const double ERFC_C[10] = {-1.26551223, 1.00002368, 0.37409196, 0.09678418,
                                  -0.18628806, 0.27886807, -1.13520398, 1.48851587,
                                  -0.82215223, 0.17087277};

static double log_erfc_positive(double x) {
    double t = 1.0 / (1.0 + 0.5 * x);
    double poly = 0.0;
    for (int k = 9; k >= 0; k--) poly = poly * t + ERFC_C[k];
    return log(t) - x * x + poly;
}

static double scaled_erfc(double log_scale, double x) {
    double log_tail = log_erfc_positive(fabs(x));
    if (x >= 0) return exp(log_scale + log_tail);
    return exp(log_scale) * (2.0 - exp(log_tail));
}

static double gauss(double s, double width) {
    double u = s / width;
    return exp(-0.5 * (u * u)) / (width * sqrt(2.0 * PI));
}

static double light_pdf(double s) {
    const double core = 1.0 - 0.03 - 0.01;
    double far = exp(-fabs(s) / 5.0) / (2.0 * 5.0);
    return core * gauss(s, 1.0) + 0.03 * gauss(s, 3.0) + 0.01 * far;
}

static double heavy_pdf(double s, double light) { /* light: light_pdf(s) */
    const double lam = 1.0 / 5.0;
    double emg = 0.5 * lam * scaled_erfc(0.5 * lam * (lam - 2.0 * s), (lam - s) / sqrt(2.0));
    return 0.5 * emg + (1.0 - 0.5) * light;
}

/* ---- helpers ---------------------------------------------------------------------------- */
static double wrap(double dphi) { /* (x + pi) % (2 pi) - pi, with numpy's remainder */
    const double b = 2.0 * PI;
    double x = dphi + PI;
    double r = fmod(x, b);
    if (r != 0.0) {
        if (r < 0.0) r += b;
    } else {
        r = copysign(0.0, b);
    }
    return r - PI;
}

static double nan_to_num(double x) {
    if (isnan(x)) return 0.0;
    if (isinf(x)) return x > 0 ? 1.7976931348623157e308 : -1.7976931348623157e308;
    return x;
}

static double sign_of(double x) {
    if (x > 0) return 1.0;
    if (x < 0) return -1.0;
    return x; /* 0 or NaN */
}

static void put_f4(uint8_t *row, int64_t offset, double value) {
    float v = (float)value;
    memcpy(row + offset, &v, 4);
}

static float get_f4(const uint8_t *row, int64_t offset) {
    float v;
    memcpy(&v, row + offset, 4);
    return v;
}

/* numpy's pairwise sum of 8 values (one row of an [n, 8] array, summed along it) */
static double sum8(const double *a) {
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

/* (px, py, pz, E) of a track of mass `mass`, from cos(phi), sin(phi) and sinh(eta) */
static void four_momentum(double pt, double cos_phi, double sin_phi, double sinh_eta,
                          double mass, double *p) {
    p[0] = pt * cos_phi;
    p[1] = pt * sin_phi;
    p[2] = pt * sinh_eta;
    p[3] = sqrt(p[0] * p[0] + p[1] * p[1] + p[2] * p[2] + mass * mass);
}

static double pair_mass(const double *a, const double *b) {
    double s[4];
    for (int k = 0; k < 4; k++) s[k] = a[k] + b[k];
    double m2 = s[3] * s[3] - s[0] * s[0] - s[1] * s[1] - s[2] * s[2];
    if (m2 < 0.0) m2 = 0.0;
    return sqrt(m2);
}

/* ---- the vertex finder of one jet (vertexing.py) ---------------------------------------- */
typedef struct {
    float sig, lxy, mass, efrac;
    int32_t ntrk, n2trk;
} Vertex;

static Vertex find_vertex(const uint8_t *rows, int64_t n_valid, int64_t row_bytes,
                          const int64_t *off, double jet_phi) {
    Vertex v = {0.0f, NAN, NAN, NAN, 0, 0};
    double c[8][MAX_CANDIDATES]; /* pt eta phi d0 z0 d0u z0u charge, zeros where unused */
    memset(c, 0, sizeof c);
    const int fields[8] = {F_PT, F_ETA, F_PHI, F_D0, F_Z0, F_D0U, F_Z0U, F_CHARGE};
    int n = 0;
    for (int64_t r = 0; r < n_valid && n < MAX_CANDIDATES; r++) {
        const uint8_t *row = rows + r * row_bytes;
        if (!(get_f4(row, off[F_SD0]) > MIN_SIGNIFICANCE)) continue;
        for (int f = 0; f < 7; f++) c[f][n] = nan_to_num((double)get_f4(row, off[fields[f]]));
        c[7][n] = (double)(int8_t)row[off[F_CHARGE]];
        n++;
    }
    if (n < 2) return v;
    const double *pt = c[0], *eta = c[1], *phi = c[2], *d0 = c[3], *z0 = c[4], *sd = c[5],
                 *sz = c[6], *q = c[7];
    /* per candidate, once: the same values each pair would compute */
    double ux[MAX_CANDIDATES], uy[MAX_CANDIDATES], sin_t[MAX_CANDIDATES], sh[MAX_CANDIDATES];
    double pion[MAX_CANDIDATES][4], proton[MAX_CANDIDATES][4];
    for (int k = 0; k < n; k++) {
        ux[k] = cos(phi[k]);
        uy[k] = sin(phi[k]);
        sin_t[k] = 1.0 / cosh(eta[k]);
        sh[k] = sinh(eta[k]);
        four_momentum(pt[k], ux[k], uy[k], sh[k], PION_MASS, pion[k]);
        four_momentum(pt[k], ux[k], uy[k], sh[k], PROTON_MASS, proton[k]);
    }
    double jx = cos(jet_phi), jy = sin(jet_phi);
    int in_vertex[MAX_CANDIDATES] = {0};
    int n2trk = 0;
    double sum_x = 0.0, sum_y = 0.0, sum_s2 = 0.0;
    for (int i = 0; i < n; i++) {
        for (int j = i + 1; j < n; j++) {
            double ux_i = ux[i], uy_i = uy[i], ux_j = ux[j], uy_j = uy[j];
            double px_i = d0[i] * uy_i, py_i = -d0[i] * ux_i;
            double px_j = d0[j] * uy_j, py_j = -d0[j] * ux_j;
            double sin_open = ux_i * uy_j - uy_i * ux_j;
            double safe = fabs(sin_open) > MIN_SIN_OPENING ? sin_open : 1.0;
            double t_i = ((px_j - px_i) * uy_j - (py_j - py_i) * ux_j) / safe;
            double vx = px_i + t_i * ux_i, vy = py_i + t_i * uy_i;
            double t_j = vx * ux_j + vy * uy_j - (px_j * ux_j + py_j * uy_j);
            double sin_i = sin_t[i], sin_j = sin_t[j];
            int forward = (vx * jx + vy * jy) > 0;
            /* the cheap cuts first: the z pull and the V0 masses only for pairs they pass */
            if (!(fabs(sin_open) > MIN_SIN_OPENING && t_i > 0 && t_j > 0 && forward
                  && hypot(vx, vy) < MAX_RADIUS))
                continue;
            double z_i = z0[i] / sin_i + t_i * sh[i];
            double z_j = z0[j] / sin_j + t_j * sh[j];
            double z_pull = fabs(z_i - z_j) / hypot(sz[i] / sin_i, sz[j] / sin_j);
            if (!(z_pull < MAX_Z_PULL)) continue;
            if (q[i] * q[j] < 0) {
                double mass_pp = pair_mass(pion[i], pion[j]);
                double mass_ppi = pt[i] >= pt[j] ? pair_mass(proton[i], pion[j])
                                                 : pair_mass(pion[i], proton[j]);
                if (fabs(mass_pp - K0S_MASS) < K0S_WINDOW
                    || fabs(mass_ppi - LAMBDA_MASS) < LAMBDA_WINDOW)
                    continue; /* a V0 */
            }
            double pair_sigma = hypot(sd[i], sd[j]) / fabs(safe);
            n2trk++;
            sum_x += vx;
            sum_y += vy;
            sum_s2 += pair_sigma * pair_sigma;
            in_vertex[i] = in_vertex[j] = 1;
        }
    }
    int ntrk = 0;
    for (int k = 0; k < MAX_CANDIDATES; k++) ntrk += in_vertex[k];
    v.ntrk = ntrk;
    v.n2trk = n2trk;
    if (n2trk == 0) return v;
    double mean_x = sum_x / n2trk, mean_y = sum_y / n2trk;
    double sigma = sqrt(sum_s2) / n2trk;
    double lxy = hypot(mean_x, mean_y) * sign_of(mean_x * jx + mean_y * jy);
    double p[4][MAX_CANDIDATES];
    for (int k = 0; k < MAX_CANDIDATES; k++)
        for (int a = 0; a < 4; a++) p[a][k] = in_vertex[k] ? pion[k][a] : 0.0;
    double total[4];
    for (int a = 0; a < 4; a++) total[a] = sum8(p[a]);
    double m2 = total[3] * total[3] - total[0] * total[0] - total[1] * total[1]
                - total[2] * total[2];
    if (m2 < 0.0) m2 = 0.0;
    double e_valid = 0.0;
    for (int64_t r = 0; r < n_valid; r++) {
        const uint8_t *row = rows + r * row_bytes;
        double m[4], row_phi = (double)get_f4(row, off[F_PHI]);
        four_momentum((double)get_f4(row, off[F_PT]), cos(row_phi), sin(row_phi),
                      sinh((double)get_f4(row, off[F_ETA])), PION_MASS, m);
        e_valid += m[3];
    }
    v.sig = (float)(lxy / sigma);
    v.lxy = (float)lxy;
    v.mass = (float)sqrt(m2);
    v.efrac = (float)(total[3] / e_valid);
    return v;
}

/* ---- ff_build_tracks -------------------------------------------------------------------- */
static uint64_t order_key(double s) { /* descending_magnitude's low half */
    float m = fabsf((float)s);
    if (isnan(m)) return 0xFFFFFFFFull;
    uint32_t bits;
    memcpy(&bits, &m, 4);
    return 0xFFFFFFFEull - bits;
}

/* Tracks of n_jets jets -> the padded TDD rows [n_jets, max_tracks] (row_bytes each, fields
 * at offsets[]; padding_row after a jet's tracks) and the per-jet baselines. Jet j's tracks
 * are values starts[j] .. starts[j] + counts[j] - 1 of the 8 inputs (TRACK_INPUTS), each
 * float64 (kinds[f] 0) or float32 (1). Returns 0, or -1 when out of memory. */
int ff_build_tracks(int64_t n_jets, const int64_t *counts, const int64_t *starts,
                    const float *jet_pt, const float *jet_eta, const float *jet_phi,
                    const void *const *inputs, const int32_t *kinds, int64_t max_tracks,
                    int64_t row_bytes, const int64_t *off, const uint8_t *padding_row,
                    uint8_t *out, float *ip2d, float *sv_sig, float *sv_lxy, float *sv_mass,
                    float *sv_efrac, int32_t *sv_ntrk, int32_t *sv_n2trk) {
    int64_t most = 0;
    for (int64_t j = 0; j < n_jets; j++) most = counts[j] > most ? counts[j] : most;
    size_t size = (size_t)(most > 0 ? most : 1);
    double *work = malloc(sizeof(double) * 12 * size);
    uint64_t *keys = malloc(sizeof(uint64_t) * size);
    int64_t *order = malloc(sizeof(int64_t) * size);
    if (!work || !keys || !order) {
        free(work); free(keys); free(order);
        return -1;
    }
    double *deta = work, *dphi = work + most, *s_d0 = work + 2 * most, *s_z0 = work + 3 * most;
    double *in[8]; /* this jet's inputs, as float64 */
    for (int f = 0; f < 8; f++) in[f] = work + (4 + f) * most;
    const double *t_pt = in[0], *t_eta = in[1], *t_phi = in[2], *t_q = in[3], *t_d0 = in[4],
                 *t_z0 = in[5], *t_d0u = in[6], *t_z0u = in[7];
    for (int64_t j = 0; j < n_jets; j++) {
        int64_t n = counts[j];
        for (int f = 0; f < 8; f++) {
            if (kinds[f]) {
                const float *src = (const float *)inputs[f] + starts[j];
                for (int64_t k = 0; k < n; k++) in[f][k] = (double)src[k];
            } else {
                memcpy(in[f], (const double *)inputs[f] + starts[j], sizeof(double) * (size_t)n);
            }
        }
        double jphi = (double)jet_phi[j], jeta = (double)jet_eta[j], jpt = (double)jet_pt[j];
        double llr = 0.0;
        for (int64_t k = 0; k < n; k++) {
            dphi[k] = wrap(t_phi[k] - jphi);
            deta[k] = t_eta[k] - jeta;
            double d0_sign = t_d0[k] * sin(dphi[k]) < 0 ? -1.0 : 1.0;
            double z0_sign = t_z0[k] * deta[k] <= 0 ? 1.0 : -1.0;
            s_d0[k] = d0_sign * fabs(t_d0[k]) / t_d0u[k];
            s_z0[k] = z0_sign * fabs(t_z0[k]) / t_z0u[k];
            if (isfinite(s_d0[k])) {
                double s = s_d0[k] < -30.0 ? -30.0 : (s_d0[k] > 60.0 ? 60.0 : s_d0[k]);
                double light = light_pdf(s);
                llr += log(heavy_pdf(s, light)) - log(light);
            }
            /* stable insertion by key */
            uint64_t key = order_key(s_d0[k]);
            int64_t at = k;
            while (at > 0 && keys[at - 1] > key) {
                keys[at] = keys[at - 1];
                order[at] = order[at - 1];
                at--;
            }
            keys[at] = key;
            order[at] = k;
        }
        ip2d[j] = (float)llr;
        int64_t kept = n < max_tracks ? n : max_tracks;
        uint8_t *rows = out + j * max_tracks * row_bytes;
        for (int64_t r = 0; r < kept; r++) {
            int64_t k = order[r];
            uint8_t *row = rows + r * row_bytes;
            put_f4(row, off[F_PT], t_pt[k]);
            put_f4(row, off[F_ETA], t_eta[k]);
            put_f4(row, off[F_PHI], t_phi[k]);
            put_f4(row, off[F_DETA], deta[k]);
            put_f4(row, off[F_DPHI], dphi[k]);
            put_f4(row, off[F_DR], hypot(deta[k], dphi[k]));
            put_f4(row, off[F_PTFRAC], t_pt[k] / jpt);
            row[off[F_CHARGE]] = (uint8_t)(int8_t)(isnan(t_q[k]) ? -1.0 : t_q[k]);
            put_f4(row, off[F_D0], t_d0[k]);
            put_f4(row, off[F_Z0], t_z0[k]);
            put_f4(row, off[F_D0U], t_d0u[k]);
            put_f4(row, off[F_Z0U], t_z0u[k]);
            put_f4(row, off[F_SD0], s_d0[k]);
            put_f4(row, off[F_SZ0], s_z0[k]);
            row[off[F_VALID]] = 1;
        }
        for (int64_t r = kept; r < max_tracks; r++)
            memcpy(rows + r * row_bytes, padding_row, (size_t)row_bytes);
        Vertex v = find_vertex(rows, kept, row_bytes, off, jphi);
        sv_sig[j] = v.sig;
        sv_lxy[j] = v.lxy;
        sv_mass[j] = v.mass;
        sv_efrac[j] = v.efrac;
        sv_ntrk[j] = v.ntrk;
        sv_n2trk[j] = v.n2trk;
    }
    free(work); free(keys); free(order);
    return 0;
}

/* ---- ff_ghost_tracks -------------------------------------------------------------------- */
static double value_at(const void *column, int32_t kind, int64_t i) { /* kind 1: float32 */
    return kind ? (double)((const float *)column)[i] : ((const double *)column)[i];
}

/* The PHYSLITE tracks of the selected jets through their GhostTrack links (physlite.py's
 * _ghost_tracks_numpy, its reference). Links of jet j: n_links[j] (key, index) pairs, jet
 * after jet; a link is followed if its jet is kept, its key is wanted_key (any non-zero if
 * -1) and 0 <= index < n_trk of the jet's event. Per track t (flat over the events, the
 * event's tracks from trk_first): the columns d0 z0 theta phi qOverP [vz] (kinds: 1 float32,
 * 0 float64) and four covariance elements, element cov_k[e] of the vector of cov_len[e][t]
 * values from cov_first[e][t] (NaN beyond it); compressed: the fourth is the theta-z0
 * correlation coefficient. Per event: the primary vertex offset (pv_dx, pv_dy, pv_z).
 * Writes the selected tracks' pt eta phi charge d0 z0SinTheta d0Uncertainty
 * z0SinThetaUncertainty to out[0..7] (capacity: all links), the count of each kept jet
 * (zeroed by the caller) and stats (links of kept jets, followed, selected tracks: the
 * number written). Returns 0. */
int ff_ghost_tracks(int64_t n_jets, const int64_t *n_links, const uint8_t *keep,
                        const int64_t *event_of_jet, const int64_t *key, const int64_t *index,
                        int64_t wanted_key, const int64_t *n_trk, const int64_t *trk_first,
                        const void *const *cols, const int32_t *kinds, int32_t has_vz,
                        const double *pv_dx, const double *pv_dy, const double *pv_z,
                        const void *const *cov_values, const int32_t *cov_kinds,
                        const int64_t *const *cov_first, const int64_t *const *cov_len,
                        const int64_t *cov_k, int32_t compressed, const double *cuts,
                        double *const *out, int64_t *counts, int64_t *stats) {
    int64_t link = 0, n_out = 0, kept_jet = -1;
    for (int64_t j = 0; j < n_jets; j++) {
        int64_t first_link = link;
        link += n_links[j];
        if (!keep[j]) continue;
        kept_jet++;
        stats[0] += n_links[j];
        int64_t e = event_of_jet[j];
        for (int64_t l = first_link; l < link; l++) {
            int key_ok = wanted_key >= 0 ? key[l] == wanted_key : key[l] != 0;
            if (!(key_ok && index[l] >= 0 && index[l] < n_trk[e])) continue;
            stats[1]++;
            int64_t t = trk_first[e] + index[l];
            double d0 = value_at(cols[0], kinds[0], t), z0 = value_at(cols[1], kinds[1], t);
            double theta = value_at(cols[2], kinds[2], t), phi = value_at(cols[3], kinds[3], t);
            double qoverp = value_at(cols[4], kinds[4], t);
            if (has_vz) z0 = z0 + value_at(cols[5], kinds[5], t);
            double dx = pv_dx[e], dy = pv_dy[e];
            z0 = z0 - pv_z[e];
            d0 = d0 - (-dx * sin(phi) + dy * cos(phi));
            double c[4];
            for (int k = 0; k < 4; k++)
                c[k] = cov_len[k][t] > cov_k[k]
                           ? value_at(cov_values[k], cov_kinds[k], cov_first[k][t] + cov_k[k])
                           : NAN;
            double var_d0 = c[0], var_z0 = c[1], var_th = c[2];
            double cov_thz0 = compressed ? c[3] * sqrt(var_th * var_z0) : c[3];
            double sin_t = sin(theta), cos_t = cos(theta);
            double pt = sin_t / fabs(qoverp);
            double zc = z0 * cos_t;
            double sigma_z0st = sqrt(sin_t * sin_t * var_z0 + zc * zc * var_th
                                     + 2.0 * z0 * sin_t * cos_t * cov_thz0);
            double eta = -log(tan(0.5 * theta));
            double z0st = z0 * sin_t;
            if (!(pt > cuts[0] && fabs(eta) < cuts[1] && fabs(d0) < cuts[2]
                  && fabs(z0st) < cuts[3]))
                continue;
            out[0][n_out] = pt;
            out[1][n_out] = eta;
            out[2][n_out] = phi;
            out[3][n_out] = sign_of(qoverp);
            out[4][n_out] = -d0;
            out[5][n_out] = z0st;
            out[6][n_out] = sqrt(var_d0);
            out[7][n_out] = sigma_z0st;
            n_out++;
            counts[kept_jet]++;
        }
    }
    stats[2] = n_out;
    return 0;
}

/* ---- ff_interleave ---------------------------------------------------------------------- */
/* Columns into the fields of n records of row_bytes: field f (sizes[f] bytes at offsets[f])
 * of record i is element i of cols[f]; what numpy's field assignments do, in one call. */
int ff_interleave(int64_t n, int64_t n_fields, const void *const *cols, const int64_t *sizes,
                  uint8_t *out, int64_t row_bytes, const int64_t *offsets) {
    for (int64_t f = 0; f < n_fields; f++) {
        const uint8_t *src = cols[f];
        uint8_t *dst = out + offsets[f];
        int64_t size = sizes[f];
        if (size == 4) {
            for (int64_t i = 0; i < n; i++) memcpy(dst + i * row_bytes, src + i * 4, 4);
        } else if (size == 8) {
            for (int64_t i = 0; i < n; i++) memcpy(dst + i * row_bytes, src + i * 8, 8);
        } else {
            for (int64_t i = 0; i < n; i++)
                memcpy(dst + i * row_bytes, src + i * size, (size_t)size);
        }
    }
    return 0;
}

/* ---- ff_valid_prefix -------------------------------------------------------------------- */
/* Per jet, its rows before the padding (`valid` byte at valid_offset); -1 if a valid row
 * follows a padding row anywhere. */
int ff_valid_prefix(const uint8_t *raw, int64_t n_jets, int64_t width, int64_t row_bytes,
                    int64_t valid_offset, int64_t *lengths) {
    for (int64_t j = 0; j < n_jets; j++) {
        const uint8_t *rows = raw + j * width * row_bytes + valid_offset;
        int64_t n = 0;
        while (n < width && rows[n * row_bytes]) n++;
        for (int64_t r = n + 1; r < width; r++)
            if (rows[r * row_bytes]) return -1;
        lengths[j] = n;
    }
    return 0;
}

/* ---- ff_lzf_encode ---------------------------------------------------------------------- */
#define MAX_DISTANCE 8192
#define MAX_COPY 264
#define MAX_LITERALS 32

static uint8_t *put_copy(uint8_t *o, int64_t length, int64_t distance) {
    int64_t code = length - 2, dist = distance - 1;
    if (code < 7) {
        *o++ = (uint8_t)((code << 5) | (dist >> 8));
    } else {
        *o++ = (uint8_t)((7 << 5) | (dist >> 8));
        *o++ = (uint8_t)(code - 7);
    }
    *o++ = (uint8_t)(dist & 0xFF);
    return o;
}

/* The LZF streams of the chunks of raw [n_jets, width] rows (see lzf.py), one after the
 * other in out (capacity: the caller's bound), chunk k ending at ends[k]. */
int ff_lzf_encode(const uint8_t *raw, int64_t n_jets, int64_t width, int64_t row_bytes,
                  const int64_t *lengths, int64_t jets_per_chunk, uint8_t *out,
                  int64_t *ends) {
    uint8_t *o = out;
    const int64_t group = MAX_COPY / row_bytes;
    int64_t latest = -1; /* the latest jet with padding */
    for (int64_t j = 0; j < n_jets; j++) {
        int64_t tracked = lengths[j], padded = width - tracked;
        int64_t before = latest;
        int64_t distance = (j * width + tracked - (before + 1) * width + 1) * row_bytes;
        int far = padded > 0 && before >= j - j % jets_per_chunk && distance <= MAX_DISTANCE;
        int64_t literal_bytes = (tracked + (padded > 0 && !far)) * row_bytes;
        const uint8_t *src = raw + j * width * row_bytes;
        for (int64_t done = 0; done < literal_bytes; done += MAX_LITERALS) {
            int64_t len = literal_bytes - done < MAX_LITERALS ? literal_bytes - done : MAX_LITERALS;
            *o++ = (uint8_t)(len - 1);
            memcpy(o, src + done, (size_t)len);
            o += len;
        }
        if (far) o = put_copy(o, row_bytes, distance);
        int64_t near = padded - 1 > 0 ? padded - 1 : 0;
        while (near > 0) {
            int64_t rows = near < group ? near : group;
            o = put_copy(o, rows * row_bytes, row_bytes);
            near -= rows;
        }
        if (padded > 0) latest = j;
        if ((j + 1) % jets_per_chunk == 0) ends[j / jets_per_chunk] = o - out;
    }
    return 0;
}

/* ---- ff_lzf_rows ------------------------------------------------------------------------ */
/* LZF streams of the chunks of n_rows rows of row_bytes (rows_per_chunk each; n_rows a whole
 * number of chunks) that look for repeats in one place only: the same bytes one row back.
 * Jets of one event share their event fields, absent fields share their NaN / -1 markers:
 * those runs become copies, everything else literal runs. Chunk k ends at ends[k] in out
 * (capacity: n_rows * row_bytes * 33 / 32 + chunks). Needs row_bytes <= MAX_DISTANCE. */
int ff_lzf_rows(const uint8_t *raw, int64_t n_rows, int64_t row_bytes, int64_t rows_per_chunk,
                uint8_t *out, int64_t *ends) {
    uint8_t *o = out;
    const int64_t chunk_bytes = rows_per_chunk * row_bytes;
    for (int64_t c = 0; c * rows_per_chunk < n_rows; c++) {
        const uint8_t *in = raw + c * chunk_bytes;
        int64_t i = 0, literal_start = 0;
        while (i < chunk_bytes) {
            int64_t run = 0;
            if (i >= row_bytes) {
                int64_t most = chunk_bytes - i < MAX_COPY ? chunk_bytes - i : MAX_COPY;
                while (run < most && in[i + run] == in[i + run - row_bytes]) run++;
            }
            if (run < 3) {
                i++;
                continue;
            }
            for (int64_t done = literal_start; done < i; done += MAX_LITERALS) {
                int64_t len = i - done < MAX_LITERALS ? i - done : MAX_LITERALS;
                *o++ = (uint8_t)(len - 1);
                memcpy(o, in + done, (size_t)len);
                o += len;
            }
            o = put_copy(o, run, row_bytes);
            i += run;
            literal_start = i;
        }
        for (int64_t done = literal_start; done < chunk_bytes; done += MAX_LITERALS) {
            int64_t len = chunk_bytes - done < MAX_LITERALS ? chunk_bytes - done : MAX_LITERALS;
            *o++ = (uint8_t)(len - 1);
            memcpy(o, in + done, (size_t)len);
            o += len;
        }
        ends[c] = o - out;
    }
    return 0;
}
