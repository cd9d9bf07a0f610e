# Reference values for tests/test_small_sample.py: lme4 + pbkrtest/lmerTest Kenward-Roger,
# clubSandwich CR2, MASS::polr. Usage: Rscript primary_check.R data.csv
suppressPackageStartupMessages({library(lme4); library(lmerTest); library(pbkrtest); library(clubSandwich)})
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1], stringsAsFactors = FALSE)
d$sex <- factor(d$sex); d$episode_duration <- factor(d$episode_duration); d$risk_group <- factor(d$risk_group)
d$practice <- factor(d$practice_id); d$phase <- factor(d$phase3)
f <- rmdq_change_6m ~ phase3 + rmdq_0m + age + sex + episode_duration + risk_group
m <- lmer(update(f, . ~ . + (1 | practice) + (1 | practice:phase)), data = d, REML = TRUE,
          control = lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10)))
kr <- contest(m, L = as.numeric(names(fixef(m)) == "phase3"), ddf = "Kenward-Roger", joint = FALSE)
st <- contest(m, L = as.numeric(names(fixef(m)) == "phase3"), ddf = "Satterthwaite", joint = FALSE)
vc <- as.data.frame(VarCorr(m))
o <- lm(update(f, . ~ . + practice), data = d)
ct <- coef_test(o, vcov = "CR2", cluster = d$practice, test = "naive-t", coefs = "phase3")
cat(sprintf("kr_estimate=%.10g\nkr_se=%.10g\nkr_df=%.10g\nsatt_se=%.10g\nsatt_df=%.10g\n",
            kr$Estimate, kr[["Std. Error"]], kr$df, st[["Std. Error"]], st$df))
cat(sprintf("var_%s=%.10g\n", gsub(":", "_", vc$grp), vc$vcov), sep = "")
cat(sprintf("reml=%.10g\n", REMLcrit(m)))
cat(sprintf("cr2_estimate=%.10g\ncr2_se=%.10g\ncr2_df=%.10g\n", ct$beta, ct$SE, ct$df))
