package jobs

// ProgressEvery is progressEvery, for the tests of package jobs_test.
const ProgressEvery = progressEvery
