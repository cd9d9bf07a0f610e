# Reference for tests/test_small_sample.py::test_ordinal_fit_matches_mass_polr (global change, bundled
# complete cases written by that test). Usage: Rscript polr_check.R data.csv
args <- commandArgs(trailingOnly = TRUE)
suppressPackageStartupMessages(library(MASS))
d <- read.csv(args[1])
d$y <- factor(d$global_change_6m, ordered = TRUE)
for (v in c("sex", "episode_duration", "risk_group")) d[[v]] <- factor(d[[v]])
m <- polr(y ~ phase3 + rmdq_0m + age + sex + episode_duration + risk_group, data = d, Hess = TRUE,
          control = list(reltol = 1e-14, maxit = 10000))
cat(sprintf("%.10g %.10g %.10f\n", coef(m)["phase3"], sqrt(diag(vcov(m)))["phase3"], logLik(m)))
